import { mkdir, readFile, writeFile, chmod, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { PermissionDeniedError } from './errors.ts'

export const IDENTITY_FILE = 'identity.key'

/**
 * Loads the node's Ed25519 key from its data directory, creating it on first
 * start. The key is the node's credential on the mesh, so it is written 0600
 * and a key readable by others is refused rather than silently used.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<PrivateKey> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const file = join(dataDir, IDENTITY_FILE)
  try {
    const st = await stat(file)
    if ((st.mode & 0o077) !== 0) {
      throw new PermissionDeniedError(`${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`)
    }
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = await generateKeyPair('Ed25519')
  // 'wx' so that two processes starting at once cannot overwrite each other's key.
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  await chmod(file, 0o600)
  return key
}
