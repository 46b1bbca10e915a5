import { spawn, execFileSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, writeFile, copyFile, chmod } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { startedListening, stopDaemon } from './bench-daemon.ts'

const SSHD = '/usr/sbin/sshd'

/**
 * A private sshd on a loopback port, with a generated host key and one
 * generated client key as the only way in, to time `scp` side by side with
 * the agents. Undefined (with the reason) when this machine has no sshd.
 */
export class LocalSshd {
  readonly dir: string
  readonly port: number
  private readonly child: ChildProcess

  private constructor (dir: string, port: number, child: ChildProcess) {
    this.dir = dir
    this.port = port
    this.child = child
  }

  static async start (port: number): Promise<LocalSshd | string> {
    if (!existsSync(SSHD)) return `no ${SSHD} (apt-get install openssh-server)`
    const dir = await mkdtemp(join(tmpdir(), 'staccato-sshd-'))
    await chmod(dir, 0o700)
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')])
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')])
    await copyFile(join(dir, 'client_key.pub'), join(dir, 'authorized_keys'))
    await chmod(join(dir, 'authorized_keys'), 0o600)
    // Privilege separation needs this directory when sshd runs as root.
    if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
    await writeFile(join(dir, 'sshd_config'), [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      // The key files sit under the world-writable /tmp, which StrictModes refuses.
      'StrictModes no',
      'Subsystem sftp internal-sftp',
      ''
    ].join('\n'))
    const child = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', d => { stderr += String(d) })
    const sshd = new LocalSshd(dir, port, child)
    if (await startedListening(child, port, 100)) return sshd
    await sshd.stop()
    return `sshd did not start: ${stderr.trim().split('\n').slice(-2).join(' ')}`
  }

  /** Copies a local file (a directory with `recursive`) to `dest` through sshd; the milliseconds scp took. */
  scp (source: string, dest: string, cipher: string, recursive = false): number {
    const start = performance.now()
    execFileSync('scp', [
      '-q', ...(recursive ? ['-r'] : []), '-c', cipher, '-P', String(this.port), ...this.clientOptions(),
      source, `${userInfo().username}@127.0.0.1:${dest}`
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    return performance.now() - start
  }

  /** `rsync -a source/ dest/` over ssh to this sshd; the milliseconds it took. */
  rsync (source: string, dest: string, cipher: string): number {
    const ssh = ['ssh', '-c', cipher, '-p', String(this.port), ...this.clientOptions()].join(' ')
    const start = performance.now()
    execFileSync('rsync', ['-a', '-e', ssh, source, `${userInfo().username}@127.0.0.1:${dest}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    return performance.now() - start
  }

  private clientOptions (): string[] {
    return [
      '-i', join(this.dir, 'client_key'),
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'
    ]
  }

  async stop (): Promise<void> {
    await stopDaemon(this.child, this.dir)
  }
}

