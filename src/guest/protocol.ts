/**
 * The host <-> guest agent protocol, version 1. The guest side is
 * src/guest/agent/hearth-agent.c; the two must agree byte for byte.
 *
 * Every message is a frame:
 *
 *   u8 type | u32 id | u32 length | payload[length]        (little-endian)
 *
 * `id` ties output and exit frames to the EXEC that caused them. Payload
 * fields are u32/u64 integers and byte strings (u32 length + bytes).
 *
 *   PING      host -> guest   (empty)                      guest answers HELLO
 *   HELLO     guest -> host   u16 version, u16 flags, agent name
 *   IDENTITY  host -> guest   u64 unix time (µs), str hostname, str machine-id, str seed,
 *                             then optional extensions, each u32 kind + str body
 *   IDENTITY_OK guest -> host (empty)
 *   EXEC      host -> guest   u32 timeout ms, u32 argc, str*argc, u32 envc, str*envc ("K=V"), str cwd
 *   STDOUT    guest -> host   u64 µs since exec start, raw bytes
 *   STDERR    guest -> host   u64 µs since exec start, raw bytes
 *   EXIT      guest -> host   i32 exit code (-1 if signalled), i32 signal, u64 µs since start
 *   ERROR     guest -> host   utf-8 message
 *
 * IDENTITY extensions keep version 1 compatible both ways: an agent that
 * predates them stops reading after the seed (it ignores trailing bytes), and
 * a newer agent applies only the kinds it knows, skipping the others by their
 * length. An agent says in its HELLO flags which kinds it applies:
 *
 *   kind 1 (NETWORK)  str address "A.B.C.D/PREFIX", str gateway, str dns
 *                     flag bit 0 (HELLO_FLAG_IDENTITY_NETWORK): the agent
 *                     re-addresses eth0 (old address replaced, default route via
 *                     the gateway, /etc/resolv.conf), as for hearth.ip= at boot.
 *                     A restored clone on a TAP device of its own needs it.
 *
 * The guest sends HELLO once when it starts and again for every PING, which is
 * how a host finds the agent ready on a cold boot and on a restored snapshot alike.
 *
 * Connect-back (VMs on a flintlockd host, which Hearth cannot reach): the agent
 * dials Hearth over TCP (`hearth-agent --connect tcp://HOST:PORT`) and, before
 * any frame, authenticates with one ASCII line carrying its per-VM token:
 *
 *   guest -> host   "HEARTH-CONNECT 1 <token>\n"     (1 = this handshake's version;
 *                                                    token: 1-256 bytes 0x21-0x7e)
 *   host -> guest   "OK\n"                           then the frames above, HELLO first
 *               or  "DENIED <reason>\n"              and the host closes
 *
 * The host answers within its hello timeout or closes. A token is good for one
 * session: the agent redials with backoff while the handshake fails, and
 * exits (powers off as PID 1) once the host closes an authenticated session.
 * The host side is src/guest/connect-listener.ts.
 */
export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 9;
export const MAX_PAYLOAD = 1 << 20;

/** HELLO flag: the agent applies an IDENTITY's NETWORK extension. */
export const HELLO_FLAG_IDENTITY_NETWORK = 1;
/** IDENTITY extension kinds. */
export const IdentityExtension = { NETWORK: 1 } as const;

export const FrameType = {
  PING: 1,
  HELLO: 2,
  IDENTITY: 3,
  IDENTITY_OK: 4,
  EXEC: 5,
  STDOUT: 6,
  STDERR: 7,
  EXIT: 8,
  ERROR: 9,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  readonly type: number;
  readonly id: number;
  readonly payload: Buffer;
}

export function encodeFrame(type: FrameTypeCode, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const head = Buffer.alloc(HEADER_SIZE);
  head.writeUInt8(type, 0);
  head.writeUInt32LE(id >>> 0, 1);
  head.writeUInt32LE(payload.length, 5);
  return Buffer.concat([head, payload]);
}

/** Splits a byte stream into frames; feed it chunks as they arrive. */
export class FrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    const frames: Frame[] = [];
    while (this.buffer.length >= HEADER_SIZE) {
      const length = this.buffer.readUInt32LE(5);
      if (length > MAX_PAYLOAD) throw new RangeError(`incoming frame of ${length} bytes exceeds ${MAX_PAYLOAD}`);
      if (this.buffer.length < HEADER_SIZE + length) break;
      frames.push({
        type: this.buffer.readUInt8(0),
        id: this.buffer.readUInt32LE(1),
        payload: this.buffer.subarray(HEADER_SIZE, HEADER_SIZE + length),
      });
      this.buffer = this.buffer.subarray(HEADER_SIZE + length);
    }
    return frames;
  }
}

class PayloadWriter {
  private readonly parts: Buffer[] = [];

  u32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value >>> 0);
    this.parts.push(b);
    return this;
  }

  u64(value: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    this.parts.push(b);
    return this;
  }

  str(value: string | Buffer): this {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    this.u32(bytes.length);
    this.parts.push(bytes);
    return this;
  }

  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface ExecMessage {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly timeoutMs: number;
}

export function encodeExec(message: ExecMessage): Buffer {
  const w = new PayloadWriter().u32(message.timeoutMs).u32(message.argv.length);
  for (const arg of message.argv) w.str(arg);
  const env = Object.entries(message.env);
  w.u32(env.length);
  for (const [key, value] of env) w.str(`${key}=${value}`);
  return w.str(message.cwd).done();
}

/** The guest's eth0 as a restored clone must have it: IPv4 only. */
export interface IdentityNetwork {
  /** `A.B.C.D/PREFIX` */
  readonly address: string;
  readonly gateway: string;
  readonly dns: string;
}

export interface IdentityMessage {
  readonly unixTimeUs: bigint;
  readonly hostname: string;
  readonly machineId: string;
  readonly seed: Buffer;
  /** Sent as the NETWORK extension; only an agent with HELLO_FLAG_IDENTITY_NETWORK applies it. */
  readonly network?: IdentityNetwork | undefined;
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Throws RangeError unless every field is a dotted IPv4 address (the address with a /0-32 prefix). */
export function checkIdentityNetwork(network: IdentityNetwork): void {
  const [address, prefix, ...rest] = network.address.split('/');
  if (rest.length > 0 || !IPV4.test(address ?? '') || prefix === undefined || !/^(?:3[0-2]|[12]?\d)$/.test(prefix))
    throw new RangeError(`identity network address ${network.address} is not A.B.C.D/PREFIX`);
  for (const [name, value] of [
    ['gateway', network.gateway],
    ['dns', network.dns],
  ] as const) {
    if (!IPV4.test(value)) throw new RangeError(`identity network ${name} ${value} is not an IPv4 address`);
  }
}

export function encodeIdentity(message: IdentityMessage): Buffer {
  const w = new PayloadWriter().u64(message.unixTimeUs).str(message.hostname).str(message.machineId).str(message.seed);
  if (message.network) {
    checkIdentityNetwork(message.network);
    const { address, gateway, dns } = message.network;
    w.u32(IdentityExtension.NETWORK).str(new PayloadWriter().str(address).str(gateway).str(dns).done());
  }
  return w.done();
}

export interface HelloMessage {
  readonly version: number;
  readonly agent: string;
  /** Capabilities (HELLO_FLAG_*); 0 from an agent older than them. */
  readonly flags: number;
}

export function decodeHello(payload: Buffer): HelloMessage {
  if (payload.length < 4) throw new RangeError('HELLO payload too short');
  return { version: payload.readUInt16LE(0), agent: payload.subarray(4).toString('utf8'), flags: payload.readUInt16LE(2) };
}

export interface OutputMessage {
  readonly offsetUs: bigint;
  readonly data: Buffer;
}

export function decodeOutput(payload: Buffer): OutputMessage {
  if (payload.length < 8) throw new RangeError('output payload too short');
  return { offsetUs: payload.readBigUInt64LE(0), data: payload.subarray(8) };
}

export interface ExitMessage {
  /** Exit status, or -1 when the process died of a signal. */
  readonly code: number;
  readonly signal: number;
  readonly durationUs: bigint;
}

export function decodeExit(payload: Buffer): ExitMessage {
  if (payload.length < 16) throw new RangeError('EXIT payload too short');
  return { code: payload.readInt32LE(0), signal: payload.readInt32LE(4), durationUs: payload.readBigUInt64LE(8) };
}
