import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FrameDecoder,
  FrameType,
  HELLO_FLAG_IDENTITY_NETWORK,
  IdentityExtension,
  MAX_PAYLOAD,
  decodeExit,
  decodeHello,
  encodeExec,
  encodeFrame,
  encodeIdentity,
} from '../../src/guest/protocol.ts';
import { decodeIdentity } from '../support/firecracker-fake/agent.ts';

describe('agent protocol framing', () => {
  it('splits frames that arrive in arbitrary chunks', () => {
    const a = encodeFrame(FrameType.STDOUT, 7, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x00, 0x0a]));
    const b = encodeFrame(FrameType.PING, 0);
    const stream = Buffer.concat([a, b]);
    const decoder = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < stream.length; i += 3) frames.push(...decoder.push(stream.subarray(i, i + 3)));
    assert.equal(frames.length, 2);
    assert.equal(frames[0]?.type, FrameType.STDOUT);
    assert.equal(frames[0]?.id, 7);
    assert.deepEqual([...(frames[0]?.payload.subarray(8) ?? [])], [0xff, 0x00, 0x0a]);
    assert.equal(frames[1]?.type, FrameType.PING);
  });

  it('refuses frames larger than the limit instead of buffering them', () => {
    const head = Buffer.alloc(9);
    head.writeUInt8(FrameType.STDOUT, 0);
    head.writeUInt32LE(MAX_PAYLOAD + 1, 5);
    assert.throws(() => new FrameDecoder().push(head), /exceeds/);
    assert.throws(() => encodeFrame(FrameType.EXEC, 1, Buffer.alloc(MAX_PAYLOAD + 1)), RangeError);
  });

  it('encodes EXEC as the agent parses it: timeout, argv, env, cwd', () => {
    const payload = encodeExec({ argv: ['sh', '-c', 'échø'], env: { A: '1=2' }, cwd: '/w', timeoutMs: 1500 });
    let at = 0;
    const u32 = (): number => {
      const v = payload.readUInt32LE(at);
      at += 4;
      return v;
    };
    const str = (): string => {
      const n = u32();
      const s = payload.subarray(at, at + n).toString('utf8');
      at += n;
      return s;
    };
    assert.equal(u32(), 1500);
    assert.equal(u32(), 3);
    assert.deepEqual([str(), str(), str()], ['sh', '-c', 'échø']);
    assert.equal(u32(), 1);
    assert.equal(str(), 'A=1=2');
    assert.equal(str(), '/w');
    assert.equal(at, payload.length);
  });

  it('decodes HELLO and EXIT, including a signalled exit', () => {
    const hello = Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.from('hearth-agent/1')]);
    assert.deepEqual(decodeHello(hello), { version: 1, agent: 'hearth-agent/1', flags: 0 });
    const withFlags = Buffer.concat([Buffer.from([1, 0, HELLO_FLAG_IDENTITY_NETWORK, 0]), Buffer.from('hearth-agent/1')]);
    assert.equal(decodeHello(withFlags).flags & HELLO_FLAG_IDENTITY_NETWORK, HELLO_FLAG_IDENTITY_NETWORK);
    const exit = Buffer.alloc(16);
    exit.writeInt32LE(-1, 0);
    exit.writeInt32LE(9, 4);
    exit.writeBigUInt64LE(1234n, 8);
    assert.deepEqual(decodeExit(exit), { code: -1, signal: 9, durationUs: 1234n });
    assert.throws(() => decodeExit(Buffer.alloc(3)), RangeError);
  });

  it('IDENTITY: version 1 fields unchanged, the network as an optional trailing extension (kind + length) that older agents never read', () => {
    const base = { unixTimeUs: 123n, hostname: 'hearth-abc', machineId: 'f'.repeat(32), seed: Buffer.alloc(8, 9) };
    const plain = encodeIdentity(base);
    const network = { address: '172.30.0.6/30', gateway: '172.30.0.5', dns: '1.1.1.1' };
    const extended = encodeIdentity({ ...base, network });
    assert.deepEqual(extended.subarray(0, plain.length), plain, 'an old agent reads the same fields and stops after the seed');
    const tail = extended.subarray(plain.length);
    assert.equal(tail.readUInt32LE(0), IdentityExtension.NETWORK);
    assert.equal(tail.readUInt32LE(4), tail.length - 8, 'the body is length-prefixed, so an agent can skip a kind it does not know');
    assert.deepEqual(decodeIdentity(extended).network, network);
    assert.equal(decodeIdentity(plain).network, undefined);
    // An unknown extension kind is skipped; the network after it still applies.
    const unknown = Buffer.alloc(12);
    unknown.writeUInt32LE(99, 0);
    unknown.writeUInt32LE(4, 4);
    assert.deepEqual(decodeIdentity(Buffer.concat([plain, unknown, tail])).network, network);
    for (const bad of [
      { ...network, address: '172.30.0.6' },
      { ...network, address: '172.30.0.6/33' },
      { ...network, gateway: 'gw' },
      { ...network, dns: '1.1.1.1; rm' },
    ]) {
      assert.throws(() => encodeIdentity({ ...base, network: bad }), RangeError);
    }
  });
});
