import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { executable } from './system.ts'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../../cli/index.ts'
import type { HttpServer } from './http-servers.ts'

export type Nginx = HttpServer

/**
 * The nginx binary: STACCATO_TEST_NGINX when set (empty hides nginx, to try
 * the suite as a machine without it), else the first on PATH, else Debian's
 * /usr/sbin/nginx (not on a normal user's PATH).
 */
export function nginxBinary (): string | undefined {
  const override = process.env.STACCATO_TEST_NGINX
  if (override !== undefined) return override !== '' && executable(override) ? override : undefined
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(d => d !== ''), '/usr/sbin']
  return dirs.map(d => join(d, 'nginx')).find(executable)
}


function config (dir: string, port: number): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 128; }
http {
  log_format staccato '$request_method $uri $status range="$http_range" if_range="$http_if_range" bytes=$body_bytes_sent';
  access_log ${dir}/access.log staccato;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  default_type application/octet-stream;
  sendfile on;
  server {
    listen 127.0.0.1:${port};
    root ${dir}/www;
    client_max_body_size 0;
    location / {
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }
  }
}
`
}

async function waitForPort (port: number, child: ChildProcess, errorLog: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break
    const up = await new Promise<boolean>(resolve => {
      const socket = connect(port, '127.0.0.1', () => { socket.end(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (up) return
    await sleep(50)
  }
  const log = await readFile(errorLog, 'utf8').catch(() => '')
  child.kill('SIGKILL')
  throw new Error(`nginx did not start listening on 127.0.0.1:${port}:\n${log}`)
}

/**
 * Starts a real nginx with the dav module as a child of the test process, in
 * a temporary prefix of its own. CI installs nginx (.ci/run); there a missing
 * nginx fails here loudly rather than skipping the nginx cases.
 */
export async function startNginx (): Promise<HttpServer> {
  const bin = nginxBinary()
  if (bin === undefined) {
    throw new Error('nginx is not installed (nor named by STACCATO_TEST_NGINX): with CI=true the http plug-in must be tested against a real nginx too (apt-get install nginx-light, as .ci/run does)')
  }
  const dir = await mkdtemp(join(tmpdir(), 'staccato-nginx-'))
  await mkdir(join(dir, 'www'))
  await mkdir(join(dir, 'tmp'))
  const conf = join(dir, 'nginx.conf')
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    await writeFile(conf, config(dir, port))
    // -e: the error log before the config is read; the Debian default (/var/log/nginx) may not be writable.
    const child = spawn(bin, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: 'ignore' })
    try {
      await waitForPort(port, child, join(dir, 'error.log'))
    } catch (err) {
      // Another process may have taken the port between freePort() and nginx's bind.
      if (attempt < 3) continue
      await rm(dir, { recursive: true, force: true })
      throw err
    }
    // If the test process dies without stop(), nginx must not outlive it.
    const killOnExit = (): void => { child.kill('SIGKILL') }
    process.once('exit', killOnExit)
    return {
      url: `http://127.0.0.1:${port}`,
      root: join(dir, 'www'),
      async accessLog () {
        const text = await readFile(join(dir, 'access.log'), 'utf8').catch(() => '')
        return text.split('\n').filter(l => l !== '')
      },
      async stop () {
        process.removeListener('exit', killOnExit)
        if (child.exitCode === null) {
          const exited = new Promise(resolve => child.once('exit', resolve))
          child.kill('SIGTERM')
          await exited
        }
        await rm(dir, { recursive: true, force: true })
      }
    }
  }
}
