import { execFileSync } from 'node:child_process'
import { constants } from 'node:fs'
import { mkdtemp, open, readFile, readdir, readlink, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The open flags of every descriptor any process here holds on a partial
 * file under `dir`, from /proc/<pid>/fdinfo: how a test sees whether an
 * agent writes past the page cache (O_DIRECT) without tracing it.
 */
export async function partialFileFlags (dir: string, pids?: string[]): Promise<number[]> {
  const flags: number[] = []
  for (const pid of pids ?? (await readdir('/proc')).filter(p => /^\d+$/.test(p))) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [])
    for (const fd of fds) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
      if (!link.startsWith(dir) || !link.endsWith('.partial')) continue
      const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '')
      const m = /^flags:\s+([0-7]+)$/m.exec(info)
      if (m !== null) flags.push(parseInt(m[1], 8))
    }
  }
  return flags
}

/** Whether a partial file under `dir` is open with O_DIRECT. */
export async function partialOpenDirect (dir: string, pids?: string[]): Promise<boolean> {
  return (await partialFileFlags(dir, pids)).some(f => (f & constants.O_DIRECT) !== 0)
}

/** Whether this directory's file system takes an O_DIRECT write of one aligned block (ext4 and xfs do; some tmpfs, FUSE and NFS set-ups do not). */
export async function takesDirectIo (dir: string): Promise<boolean> {
  const path = join(dir, '.direct-io-probe')
  try {
    const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT)
    try {
      // A WebAssembly memory starts on a page: the one aligned buffer Node gives.
      const memory = new (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } } }).WebAssembly.Memory({ initial: 1 })
      await fh.write(Buffer.from(memory.buffer, 0, 4096), 0, 4096, 0)
      return true
    } finally {
      await fh.close()
      await rm(path)
    }
  } catch {
    return false
  }
}

/** A real small file system that fills: a tmpfs of `mib` MiB, and whether it takes O_DIRECT there. */
export interface SmallTmpfs {
  /** Undefined when it could not be mounted (mounting needs root and permission to mount). */
  dir: string | undefined
  /** Mounted and takes O_DIRECT (this kernel's tmpfs does). */
  direct: boolean
  /** Appended to a skipped test's name: why it did not run. */
  skip: string
  unmount: () => Promise<void>
}

export async function smallTmpfs (mib: number): Promise<SmallTmpfs> {
  const dir = await mkdtemp(join(tmpdir(), 'staccato-small-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: 'ignore' })
  } catch {
    await rm(dir, { recursive: true, force: true })
    return { dir: undefined, direct: false, skip: ' (SKIPPED: mounting a tmpfs needs root and mount permission)', unmount: async () => {} }
  }
  const direct = await takesDirectIo(dir)
  return {
    dir,
    direct,
    skip: direct ? '' : ' (SKIPPED: this kernel\'s tmpfs refuses O_DIRECT)',
    unmount: async () => {
      execFileSync('umount', [dir])
      await rm(dir, { recursive: true, force: true })
    }
  }
}
