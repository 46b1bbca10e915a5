import { InvalidArgumentError } from '../../mesh/index.ts'

/** An image platform as image indexes name it (OCI image-index `platform`). */
export interface Platform {
  os: string
  architecture: string
  variant?: string
}

/** `oci://host[:port]/repo/path(:tag|@sha256:<hex>)[?platform=os/arch[/variant]]`, taken apart. */
export interface ImageReference {
  /** host[:port], as the registry is addressed and as `registries` in the agent's configuration names it. */
  registry: string
  repository: string
  tag?: string
  digest?: string
  platform?: Platform
}

// The grammar of github.com/distribution/reference (the OCI distribution spec's `<name>`, tag and digest).
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const REPOSITORY = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`)
const TAG = /^\w[\w.-]{0,127}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/
const PLATFORM_PART = /^[a-z0-9_.-]{1,32}$/

export function parsePlatform (text: string, what = 'platform'): Platform {
  const parts = text.split('/')
  if (parts.length < 2 || parts.length > 3 || !parts.every(p => PLATFORM_PART.test(p))) {
    throw new InvalidArgumentError(`${what} '${text}' must look like os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8`)
  }
  const [os, architecture, variant] = parts
  return variant === undefined ? { os, architecture } : { os, architecture, variant }
}

export function formatPlatform (p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(s => s !== undefined).join('/')
}

/** The platform this process runs on, in the names image indexes use (Go's GOOS/GOARCH). */
export function ownPlatform (): Platform {
  const arch: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }
  return { os: process.platform === 'win32' ? 'windows' : process.platform, architecture: arch[process.arch] ?? process.arch }
}

export function parseReference (url: URL): ImageReference {
  if (url.protocol !== 'oci:') throw new InvalidArgumentError(`${url.href} is not an oci:// URL`)
  if (url.username !== '' || url.password !== '') throw new InvalidArgumentError('oci:// URLs carry no credentials: the agent takes them from its registries configuration')
  if (url.host === '') throw new InvalidArgumentError(`${url.href}: no registry host (expected oci://registry.example:5000/team/app:1.4)`)
  for (const key of url.searchParams.keys()) {
    if (key !== 'platform') throw new InvalidArgumentError(`${url.href}: unknown parameter '${key}' (only platform=os/arch is understood)`)
  }
  const platformText = url.searchParams.get('platform')
  const platform = platformText === null ? undefined : parsePlatform(platformText, `${url.href}: platform`)
  let path = url.pathname.replace(/^\//, '')
  let digest: string | undefined
  let tag: string | undefined
  const at = path.indexOf('@')
  if (at >= 0) {
    digest = path.slice(at + 1)
    path = path.slice(0, at)
    if (!DIGEST.test(digest)) throw new InvalidArgumentError(`${url.href}: '${digest}' is not a sha256 digest (sha256: and 64 lower-case hex digits)`)
  } else {
    const colon = path.lastIndexOf(':')
    if (colon > path.lastIndexOf('/')) {
      tag = path.slice(colon + 1)
      path = path.slice(0, colon)
      if (!TAG.test(tag)) throw new InvalidArgumentError(`${url.href}: '${tag}' is not a valid tag`)
    } else {
      tag = 'latest'
    }
  }
  if (!REPOSITORY.test(path)) throw new InvalidArgumentError(`${url.href}: '${path}' is not a repository name (lower-case letters, digits, '.', '_', '-', separated by '/')`)
  return { registry: url.host, repository: path, tag, digest, platform }
}
