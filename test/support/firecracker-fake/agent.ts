// The "guest" behind the fake vsock: answers the Hearth agent protocol the way
// src/guest/agent/hearth-agent.c does, frame for frame, without running anything.
import {
  FrameType,
  HELLO_FLAG_IDENTITY_NETWORK,
  IdentityExtension,
  PROTOCOL_VERSION,
  checkIdentityNetwork,
  encodeFrame,
  type ExecMessage,
  type Frame,
  type IdentityMessage,
  type IdentityNetwork,
} from '../../../src/guest/protocol.ts';

/** The real agent's name (AGENT_VERSION in hearth-agent.c). */
export const FAKE_AGENT_NAME = 'hearth-agent/1';

/** HELLO as the real agent sends it; `flags` other than its own emulate an older agent. */
export function helloFrame(flags: number = HELLO_FLAG_IDENTITY_NETWORK): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(PROTOCOL_VERSION, 0);
  head.writeUInt16LE(flags, 2); // by default: it re-addresses eth0 from IDENTITY, as the real agent does
  return encodeFrame(FrameType.HELLO, 0, Buffer.concat([head, Buffer.from(FAKE_AGENT_NAME)]));
}

class Cursor {
  private offset = 0;
  constructor(private readonly buf: Buffer) {}

  u32(): number {
    if (this.offset + 4 > this.buf.length) throw new RangeError('truncated');
    const v = this.buf.readUInt32LE(this.offset);
    this.offset += 4;
    return v;
  }

  u64(): bigint {
    if (this.offset + 8 > this.buf.length) throw new RangeError('truncated');
    const v = this.buf.readBigUInt64LE(this.offset);
    this.offset += 8;
    return v;
  }

  bytes(): Buffer {
    const n = this.u32();
    if (this.offset + n > this.buf.length) throw new RangeError('truncated');
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }

  str(): string {
    return this.bytes().toString('utf8');
  }

  get left(): number {
    return this.buf.length - this.offset;
  }
}

/**
 * The inverse of protocol.ts `encodeIdentity`, read as the C agent reads it:
 * the version 1 fields, then extensions (u32 kind + str body) of which only
 * NETWORK is applied and the others are skipped. Throws RangeError on a short
 * payload or a network extension the agent would refuse.
 */
export function decodeIdentity(payload: Buffer): IdentityMessage {
  const c = new Cursor(payload);
  const unixTimeUs = c.u64();
  const hostname = c.str();
  const machineId = c.str();
  const seed = Buffer.from(c.bytes());
  let network: IdentityNetwork | undefined;
  while (c.left > 0) {
    const kind = c.u32();
    const body = c.bytes();
    if (kind !== IdentityExtension.NETWORK) continue;
    const n = new Cursor(body);
    network = { address: n.str(), gateway: n.str(), dns: n.str() };
    checkIdentityNetwork(network);
  }
  return { unixTimeUs, hostname, machineId, seed, ...(network ? { network } : {}) };
}

/** The inverse of protocol.ts `encodeExec`; throws RangeError on a short payload. */
export function decodeExec(payload: Buffer): ExecMessage {
  const c = new Cursor(payload);
  const timeoutMs = c.u32();
  const argc = c.u32();
  if (argc === 0 || argc > 65536) throw new RangeError('bad argv');
  const argv = Array.from({ length: argc }, () => c.str());
  const envc = c.u32();
  const env: Record<string, string> = {};
  for (let i = 0; i < envc; i++) {
    const pair = c.str();
    const eq = pair.indexOf('=');
    env[eq < 0 ? pair : pair.slice(0, eq)] = eq < 0 ? '' : pair.slice(eq + 1);
  }
  return { argv, env, cwd: c.str(), timeoutMs };
}

function errorFrame(id: number, message: string): Buffer {
  return encodeFrame(FrameType.ERROR, id, Buffer.from(message));
}

function outputFrame(type: typeof FrameType.STDOUT | typeof FrameType.STDERR, id: number, text: string): Buffer {
  const offset = Buffer.alloc(8);
  offset.writeBigUInt64LE(1n);
  return encodeFrame(type, id, Buffer.concat([offset, Buffer.from(text)]));
}

function exitFrame(id: number, code: number): Buffer {
  const p = Buffer.alloc(16);
  p.writeInt32LE(code, 0);
  p.writeInt32LE(0, 4); // not signalled
  p.writeBigUInt64LE(2n, 8);
  return encodeFrame(FrameType.EXIT, id, p);
}

/** A pretend command: `echo` prints its words, `sh -c 'exit N'` exits N, anything else is not found. */
function fakeRun(id: number, argv: readonly string[]): Buffer[] {
  const [cmd, ...rest] = argv;
  if (cmd === 'echo') return [outputFrame(FrameType.STDOUT, id, `${rest.join(' ')}\n`), exitFrame(id, 0)];
  const exit = cmd === 'sh' && rest.length === 2 && rest[0] === '-c' ? /^exit (\d{1,3})$/.exec(rest[1] as string) : null;
  if (exit) return [exitFrame(id, Number(exit[1]) & 0xff)];
  // The real agent's words when execvp fails with ENOENT.
  return [outputFrame(FrameType.STDERR, id, `hearth: cannot run ${cmd}: No such file or directory\n`), exitFrame(id, 127)];
}

/** What the agent writes back for one frame from the host; `execs` records each EXEC it saw, `onIdentity` hears each IDENTITY it applied. */
export function answerFrame(frame: Frame, execs: ExecMessage[], onIdentity?: (identity: IdentityMessage) => void, helloFlags?: number): Buffer[] {
  switch (frame.type) {
    case FrameType.PING:
      return [helloFrame(helloFlags)];
    case FrameType.IDENTITY: {
      let identity: IdentityMessage;
      try {
        identity = decodeIdentity(frame.payload);
      } catch {
        return [errorFrame(frame.id, 'malformed IDENTITY frame')];
      }
      onIdentity?.(identity);
      return [encodeFrame(FrameType.IDENTITY_OK, frame.id)];
    }
    case FrameType.EXEC: {
      let exec: ExecMessage;
      try {
        exec = decodeExec(frame.payload);
      } catch (error) {
        return [errorFrame(frame.id, (error as Error).message === 'bad argv' ? 'malformed EXEC frame: bad argv' : 'malformed EXEC frame')];
      }
      execs.push(exec);
      return fakeRun(frame.id, exec.argv);
    }
    default:
      return [errorFrame(frame.id, `unknown frame type ${frame.type}`)];
  }
}
