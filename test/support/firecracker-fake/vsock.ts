// The host side of a Firecracker vsock device: a Unix socket at `uds_path`
// where the host writes `CONNECT <port>\n`, reads `OK <host port>\n`, and then
// talks to the guest. Behind it sits the emulated Hearth agent (agent.ts).
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { FrameDecoder, FrameType, encodeFrame, type ExecMessage, type IdentityMessage } from '../../../src/guest/protocol.ts';
import { answerFrame, helloFrame } from './agent.ts';

/** off: not booted, nothing listens in the guest. paused: vCPUs stopped, the guest answers nothing until resumed. */
export type GuestPower = 'off' | 'running' | 'paused';

export interface VsockOptions {
  /** Emulate the Hearth agent in the guest; without it every CONNECT is refused. */
  readonly agent: boolean;
  /** The only guest port the agent listens on; any port when unset. */
  readonly agentPort?: number;
  /** Where each EXEC the agent receives is recorded. */
  readonly execs: ExecMessage[];
  /** Hears each IDENTITY the agent applies. */
  readonly onIdentity?: ((identity: IdentityMessage) => void) | undefined;
  /** The agent's HELLO flags; unset, those of the current agent. */
  readonly helloFlags?: number | undefined;
}

// Firecracker numbers host-side ports of host-initiated connections from 2^30 up.
const FIRST_HOST_PORT = 1 << 30;
const MAX_CONNECT_LINE = 64;

export class FakeVsock {
  private power: GuestPower = 'off';
  private helloOwed = false;
  private nextHostPort = FIRST_HOST_PORT;
  private readonly sockets = new Set<Socket>();
  /** Work that waits for the guest to run again: parked CONNECTs and unread frames. */
  private parked: (() => void)[] = [];

  private constructor(
    readonly udsPath: string,
    private readonly server: Server,
    private readonly options: VsockOptions,
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  /** Binds `udsPath` as Firecracker does when the device is configured; fails if the path exists. */
  static bind(udsPath: string, options: VsockOptions): Promise<FakeVsock> {
    const server = createServer();
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(udsPath, () => {
        server.off('error', reject);
        resolve(new FakeVsock(udsPath, server, options));
      });
    });
  }

  /** A cold boot: the agent starts and owes its one unprompted HELLO to the first host connection. */
  boot(): void {
    this.power = 'running';
    this.helloOwed = true;
  }

  /** A restored guest said its HELLO before the snapshot; it answers PING only. */
  restore(running: boolean): void {
    this.power = running ? 'running' : 'paused';
    this.helloOwed = false;
  }

  /** Guest work (frames the host sent) held while paused, run on resume: lets a test see a frame arrived and was not answered. */
  get parkedWork(): number {
    return this.parked.length;
  }

  pause(): void {
    if (this.power === 'running') this.power = 'paused';
  }

  resume(): void {
    if (this.power !== 'paused') return;
    this.power = 'running';
    const work = this.parked;
    this.parked = [];
    for (const run of work) run();
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => {
      this.server.close(() => {
        rmSync(this.udsPath, { force: true });
        resolve();
      });
    });
  }

  private whenRunning(socket: Socket, run: () => void): void {
    if (this.power === 'running') run();
    else if (this.power === 'paused') this.parked.push(run);
    // Not booted: the guest kernel resets the connection, so the host sees it close.
    else socket.destroy();
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {
      // 'close' follows
    });
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) {
        if (head.length > MAX_CONNECT_LINE) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      const match = /^CONNECT (\d+)$/.exec(head.subarray(0, nl).toString('latin1'));
      if (!match) {
        socket.destroy();
        return;
      }
      const rest = head.subarray(nl + 1);
      this.whenRunning(socket, () => this.connect(socket, Number(match[1]), rest));
    };
    socket.on('data', onData);
  }

  private connect(socket: Socket, port: number, early: Buffer): void {
    const { agent, agentPort } = this.options;
    if (!agent || (agentPort !== undefined && port !== agentPort)) {
      socket.destroy();
      return;
    }
    socket.write(`OK ${this.nextHostPort++}\n`);
    if (this.helloOwed) {
      this.helloOwed = false;
      socket.write(helloFrame(this.options.helloFlags));
    }
    let decoder = new FrameDecoder();
    const feed = (chunk: Buffer): void => {
      if (this.power !== 'running') {
        this.parked.push(() => feed(chunk));
        return;
      }
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        // An oversized frame: like the real agent, say so and drop what was buffered.
        socket.write(encodeFrame(FrameType.ERROR, 0, Buffer.from((error as Error).message)));
        decoder = new FrameDecoder();
        return;
      }
      for (const frame of frames) for (const out of answerFrame(frame, this.options.execs, this.options.onIdentity, this.options.helloFlags)) socket.write(out);
    };
    if (early.length) feed(early);
    socket.on('data', feed);
    socket.resume();
  }
}
