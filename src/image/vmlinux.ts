import { gunzipSync } from 'node:zlib';
import { HearthError } from '../errors.ts';
import { runProgram } from '../system/run.ts';

/**
 * Released Firecracker versions boot an uncompressed ELF `vmlinux`, while Debian
 * ships a bzImage. The bzImage's setup header says where its compressed payload
 * is (payload_offset/payload_length, boot protocol 2.08+); the payload is the ELF,
 * compressed with whatever the kernel was built with (LZ4 legacy frames for
 * Debian's cloud kernel, decoded here; gzip by zlib; xz and zstd by their tools).
 */
export async function vmlinuxFromBzImage(bzImage: Buffer): Promise<Buffer> {
  if (bzImage.readUInt32LE(0x202) !== 0x53726448) throw new Error('not a bzImage: no "HdrS" setup header signature');
  const setupSectors = bzImage[0x1f1] || 4;
  const protectedMode = (setupSectors + 1) * 512;
  const offset = bzImage.readUInt32LE(0x248);
  const length = bzImage.readUInt32LE(0x24c);
  const payload = bzImage.subarray(protectedMode + offset, protectedMode + offset + length);
  let elf: Buffer;
  if (payload.readUInt32LE(0) === 0x184c2102) elf = decodeLz4Legacy(payload);
  else if (payload[0] === 0x1f && payload[1] === 0x8b) elf = gunzipSync(payload);
  else if (payload.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) elf = await viaTool('xz', ['-dc'], payload, 'xz-utils');
  else if (payload.readUInt32LE(0) === 0xfd2fb528) elf = await viaTool('zstd', ['-dc'], payload, 'zstd');
  else throw new Error(`the bzImage payload has an unknown compression (magic ${payload.subarray(0, 4).toString('hex')})`);
  if (elf.readUInt32BE(0) !== 0x7f454c46) throw new Error('the decompressed kernel is not an ELF file');
  return elf;
}

async function viaTool(tool: string, args: string[], input: Buffer, pkg: string): Promise<Buffer> {
  const { mkdtemp, writeFile, readFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'hearth-vmlinux-'));
  try {
    await writeFile(join(dir, 'payload'), input);
    await runProgram('sh', ['-c', `${tool} ${args.join(' ')} payload > vmlinux`], { cwd: dir }).catch((error: unknown) => {
      throw new HearthError('HEARTH_ERR_TOOL_MISSING', { tool, package: pkg }, { cause: error });
    });
    return await readFile(join(dir, 'vmlinux'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** LZ4 "legacy" frames as the kernel writes them: a magic, then blocks of [u32 size][LZ4 block], each up to 8 MiB out. */
export function decodeLz4Legacy(input: Buffer): Buffer {
  const blocks: Buffer[] = [];
  let at = 4;
  while (at + 4 <= input.length) {
    const size = input.readUInt32LE(at);
    // The kernel appends its own size after the last frame; a second magic would start a new stream.
    if (size === 0x184c2102 || at + 4 + size > input.length) break;
    at += 4;
    blocks.push(decodeLz4Block(input.subarray(at, at + size), 8 << 20));
    at += size;
  }
  return Buffer.concat(blocks);
}

function decodeLz4Block(src: Buffer, maxOut: number): Buffer {
  const out = Buffer.allocUnsafe(maxOut);
  let i = 0;
  let o = 0;
  while (i < src.length) {
    const token = src[i++]!;
    let literals = token >> 4;
    if (literals === 15) {
      let b: number;
      do {
        b = src[i++]!;
        literals += b;
      } while (b === 255);
    }
    src.copy(out, o, i, i + literals);
    i += literals;
    o += literals;
    if (i >= src.length) break; // the last sequence has literals only
    const distance = src[i]! | (src[i + 1]! << 8);
    i += 2;
    if (distance === 0 || distance > o) throw new Error('corrupt LZ4 block: match before the start of the output');
    let match = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        b = src[i++]!;
        match += b;
      } while (b === 255);
    }
    // Byte by byte: a match may overlap the bytes it produces.
    for (let k = 0; k < match; k++) out[o + k] = out[o - distance + k]!;
    o += match;
  }
  return out.subarray(0, o);
}

/**
 * The image's kernel as an ELF `vmlinux` (PVH entry point), extracted once and
 * kept beside the bzImage in the image directory: a derived file, so the image
 * id does not change.
 */
export async function ensureVmlinux(image: { dir: string; kernelPath: string }): Promise<string> {
  const { readFile, rename, stat, writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const path = join(image.dir, 'vmlinux');
  if (
    await stat(path).then(
      () => true,
      () => false,
    )
  )
    return path;
  const elf = await vmlinuxFromBzImage(await readFile(image.kernelPath));
  const staging = `${path}.${process.pid}.tmp`;
  await writeFile(staging, elf);
  await rename(staging, path);
  return path;
}
