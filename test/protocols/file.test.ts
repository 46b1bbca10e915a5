import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { file } from '../../protocols/index.ts'
import { describeConformance } from './conformance.ts'
import { encodePath, filesUnder } from './support.ts'

describeConformance('file', async () => {
  const root = await mkdtemp(join(tmpdir(), 'staccato-file-'))
  return {
    plugin: file({ volumes: [{ name: 'vol', root, readOnly: false }] }),
    ...filesUnder(root, name => new URL(`file:///vol/${encodePath(name)}`)),
    teardown: async () => await rm(root, { recursive: true, force: true })
  }
})
