import { http } from '../../protocols/index.ts'
import { startNginx } from '../helpers/nginx.ts'
import { describeConformance } from './conformance.ts'
import { encodePath, filesUnder } from './support.ts'

describeConformance('http (nginx with dav)', async () => {
  const nginx = await startNginx()
  return {
    plugin: http({ retries: 2, retryDelay: 10, allowAddresses: ['127.0.0.0/8'] }),
    ...filesUnder(nginx.root, name => new URL(`${nginx.url}/${encodePath(name)}`)),
    teardown: async () => await nginx.stop()
  }
})
