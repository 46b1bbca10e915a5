import { execFileSync } from 'node:child_process'
import { chmod, chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

// The agent runs as its own user; root (as CI and this suite run) reads any directory, so the case needs a process
// that is not root: a child as `nobody`, which only root can start.
const root = userInfo().uid === 0
const nobody = root ? Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim()) : -1
const base = await mkdtemp(join(tmpdir(), 'staccato-group-perms-'))
afterAll(async () => { await rm(base, { recursive: true, force: true }) })

describe('group writes in a directory the agent may write but not read', () => {
  it.skipIf(!root)(`create the partials (the directory is opened O_PATH, no read permission needed)${root ? '' : ' (SKIPPED: needs root to start a process as nobody)'}`, async () => {
    const dir = join(base, 'drop')
    await mkdir(dir)
    await chown(dir, nobody, nobody)
    await chmod(dir, 0o300)
    await chmod(base, 0o755)
    const groupIo = fileURLToPath(new URL('../../protocols/group-io.ts', import.meta.url))
    const script = `
      import { writePartials } from ${JSON.stringify(groupIo)}
      const out = writePartials([{ partial: ${JSON.stringify(join(dir, '.a.bin.t.partial'))}, root: ${JSON.stringify(base)}, what: 'a.bin', offset: 0, length: 2 }], Buffer.from('ok'))
      process.stdout.write(JSON.stringify(out.map(w => 'error' in w ? w.error : 'written')))`
    const answer = execFileSync(process.execPath, ['--input-type=module', '-e', script], { uid: nobody, gid: nobody, encoding: 'utf8' })
    expect(JSON.parse(answer)).toEqual(['written'])
    expect(await readFile(join(dir, '.a.bin.t.partial'), 'utf8')).toBe('ok')
  })
})
