import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startedListening, stopDaemon } from './bench-daemon.ts'
import { freePort } from '../cli/index.ts'

const NGINX = '/usr/sbin/nginx'

/**
 * The least a registry can cost a client: nginx (sendfile, no hashing, no
 * policy) serving one image of an OCI layout on the read side of the registry
 * API, for bench:image's client floor. Only what `skopeo copy docker://…`
 * asks: /v2/, the manifest by tag or digest, and blobs (Range included, as
 * nginx serves any file).
 */
export class StaticRegistry {
  readonly dir: string
  readonly port: number
  private readonly child: ChildProcess

  private constructor (dir: string, port: number, child: ChildProcess) {
    this.dir = dir
    this.port = port
    this.child = child
  }

  /** Serves the layout's manifest tagged `tag` as `repo:tag`. */
  static async start (layout: string, tag: string, repo: string): Promise<StaticRegistry> {
    try { accessSync(NGINX, constants.X_OK) } catch { throw new Error(`the client floor needs ${NGINX} (apt-get install nginx-light)`) }
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, mediaType: string, annotations?: Record<string, string> }> }
    const m = index.manifests.find(d => d.annotations?.['org.opencontainers.image.ref.name'] === tag)
    if (m === undefined) throw new Error(`${layout} has no image tagged ${tag}`)
    const blobs = join(layout, 'blobs', 'sha256')
    const dir = await mkdtemp(join(tmpdir(), 'staccato-bench-static-'))
    const port = await freePort()
    await writeFile(join(dir, 'nginx.conf'), `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 128; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:${port};
    add_header docker-distribution-api-version registry/2.0 always;
    location = /v2/ { types {} default_type application/json; return 200 '{}'; }
    location = /v2/${repo}/manifests/${tag} {
      types {} default_type ${m.mediaType};
      add_header docker-content-digest ${m.digest};
      alias ${blobs}/${m.digest.slice('sha256:'.length)};
    }
    location ~ "^/v2/${repo}/(manifests|blobs)/sha256:([0-9a-f]{64})$" {
      types {} default_type application/octet-stream;
      alias ${blobs}/$2;
    }
  }
}
`)
    const child = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' })
    if (await startedListening(child, port, 200)) return new StaticRegistry(dir, port, child)
    child.kill('SIGKILL')
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
    await rm(dir, { recursive: true, force: true })
    throw new Error(`nginx did not start listening: ${log}`)
  }

  get host (): string {
    return `127.0.0.1:${this.port}`
  }

  async stop (): Promise<void> {
    await stopDaemon(this.child, this.dir)
  }
}

