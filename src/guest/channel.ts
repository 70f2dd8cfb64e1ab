import { createConnection, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FrameDecoder,
  FrameType,
  PROTOCOL_VERSION,
  decodeExit,
  decodeHello,
  decodeOutput,
  encodeExec,
  encodeFrame,
  encodeIdentity,
  type ExecMessage,
  type Frame,
  type HelloMessage,
  type IdentityMessage,
} from './protocol.ts';

/** Where a command's output goes as it arrives. `offsetUs` is guest time since the command started. */
export interface OutputSink {
  stdout?(data: Buffer, offsetUs: bigint): void;
  stderr?(data: Buffer, offsetUs: bigint): void;
}

export interface ExecOutcome {
  /** Shell-style: the exit status, or 128 + signal when the command was killed. */
  readonly exitCode: number;
  readonly signal: number;
  readonly durationUs: bigint;
}

/** Raised for anything that breaks the conversation: a closed socket, an agent error, a bad frame. */
export class AgentChannelError extends Error {
  constructor(
    message: string,
    readonly kind: 'closed' | 'protocol' | 'agent',
  ) {
    super(message);
    this.name = 'AgentChannelError';
  }
}

interface Waiter {
  onFrame(frame: Frame): void;
  onClose(error: AgentChannelError): void;
}

/**
 * The host end of one VM's agent port (a QEMU chardev Unix socket). One request
 * at a time: a job's steps run one after the other in the same VM.
 */
export class AgentChannel {
  private readonly decoder = new FrameDecoder();
  private waiter: Waiter | undefined;
  private closed: AgentChannelError | undefined;
  private nextId = 1;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.decoder.push(chunk);
      } catch (error) {
        this.fail(new AgentChannelError((error as Error).message, 'protocol'));
        return;
      }
      for (const frame of frames) this.waiter?.onFrame(frame);
    });
    socket.on('close', () => this.fail(new AgentChannelError('the agent connection closed (the VM stopped)', 'closed')));
    socket.on('error', () => {
      // 'close' follows
    });
  }

  /** Connects, retrying while QEMU has not created the socket yet. */
  static async connect(path: string, deadline: number): Promise<AgentChannel> {
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        return new AgentChannel(socket);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw error;
        await sleep(5);
      }
    }
  }

  /**
   * Connects through Firecracker's vsock proxy: the host side of the guest's
   * vsock is a Unix socket where `CONNECT <port>\n` opens a stream to that guest
   * port and is answered `OK <host port>\n`. Until the agent listens, the proxy
   * closes the connection, so this retries until the deadline.
   */
  static async connectVsock(udsPath: string, port: number, deadline: number): Promise<AgentChannel> {
    for (;;) {
      try {
        const socket = await vsockHandshake(udsPath, port);
        const channel = new AgentChannel(socket);
        socket.resume(); // paused by the handshake so no agent byte was lost in between
        return channel;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(20);
      }
    }
  }

  /**
   * Wraps a stream the agent is already on, e.g. a connect-back socket that
   * src/guest/connect-listener.ts authenticated. Pass it paused, so that no
   * agent byte is lost before the channel listens.
   */
  static fromSocket(socket: Socket): AgentChannel {
    const channel = new AgentChannel(socket);
    if (socket.destroyed) channel.fail(new AgentChannelError('the agent connection closed (the VM stopped)', 'closed'));
    socket.resume();
    return channel;
  }

  private fail(error: AgentChannelError): void {
    if (this.closed) return;
    this.closed = error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.onClose(error);
  }

  private request<T>(send: Buffer | undefined, handle: (frame: Frame, settle: (value: T) => void, reject: (error: Error) => void) => void): Promise<T> {
    if (this.closed) return Promise.reject(this.closed);
    if (this.waiter) return Promise.reject(new AgentChannelError('another agent request is in flight', 'protocol'));
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        this.waiter = undefined;
      };
      this.waiter = {
        onFrame: (frame) => {
          if (frame.type === FrameType.ERROR) {
            done();
            reject(new AgentChannelError(`agent: ${frame.payload.toString('utf8')}`, 'agent'));
            return;
          }
          try {
            handle(
              frame,
              (value) => {
                done();
                resolve(value);
              },
              (error) => {
                done();
                reject(error);
              },
            );
          } catch (error) {
            done();
            reject(new AgentChannelError((error as Error).message, 'protocol'));
          }
        },
        onClose: reject,
      };
      if (send) this.socket.write(send);
    });
  }

  /**
   * Waits for the agent's HELLO. With `ping`, asks for one first: a restored
   * guest said its HELLO long ago, to another QEMU process.
   */
  hello(ping: boolean): Promise<HelloMessage> {
    return this.request<HelloMessage>(ping ? encodeFrame(FrameType.PING, 0) : undefined, (frame, settle, reject) => {
      if (frame.type !== FrameType.HELLO) return;
      const hello = decodeHello(frame.payload);
      if (hello.version !== PROTOCOL_VERSION)
        reject(new AgentChannelError(`agent speaks protocol v${hello.version} (${hello.agent}), the host speaks v${PROTOCOL_VERSION}`, 'protocol'));
      else settle(hello);
    });
  }

  setIdentity(identity: IdentityMessage): Promise<void> {
    const id = this.nextId++;
    return this.request<void>(encodeFrame(FrameType.IDENTITY, id, encodeIdentity(identity)), (frame, settle) => {
      if (frame.type === FrameType.IDENTITY_OK && frame.id === id) settle();
    });
  }

  exec(message: ExecMessage, sink: OutputSink = {}): Promise<ExecOutcome> {
    const id = this.nextId++;
    return this.request<ExecOutcome>(encodeFrame(FrameType.EXEC, id, encodeExec(message)), (frame, settle) => {
      if (frame.id !== id) return; // a late HELLO answering an earlier PING
      if (frame.type === FrameType.STDOUT) {
        const out = decodeOutput(frame.payload);
        sink.stdout?.(out.data, out.offsetUs);
      } else if (frame.type === FrameType.STDERR) {
        const out = decodeOutput(frame.payload);
        sink.stderr?.(out.data, out.offsetUs);
      } else if (frame.type === FrameType.EXIT) {
        const exit = decodeExit(frame.payload);
        settle({ exitCode: exit.code >= 0 ? exit.code : 128 + exit.signal, signal: exit.signal, durationUs: exit.durationUs });
      }
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

function vsockHandshake(udsPath: string, port: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = createConnection(udsPath);
    let seen = Buffer.alloc(0);
    const fail = (reason: string): void => {
      socket.destroy();
      reject(new Error(`vsock ${udsPath} port ${port}: ${reason}`));
    };
    socket.once('error', (error) => fail(error.message));
    socket.once('close', () => fail('closed before OK (the agent is not listening yet)'));
    socket.once('connect', () => socket.write(`CONNECT ${port}\n`));
    const onData = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      const end = seen.indexOf(0x0a);
      if (end < 0) {
        if (seen.length > 64) fail('no line ending in the proxy answer');
        return;
      }
      const line = seen.subarray(0, end).toString('latin1');
      if (!/^OK \d+$/.test(line)) return fail(`the proxy answered ${JSON.stringify(line.slice(0, 40))}`);
      socket.removeListener('data', onData);
      socket.removeAllListeners('close');
      socket.removeAllListeners('error');
      socket.pause();
      // Bytes after the OK line are already the agent's: hand them to the channel first.
      const rest = seen.subarray(end + 1);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on('data', onData);
  });
}
