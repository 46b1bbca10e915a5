import { http } from '../../protocols/index.ts'
import { httpServers } from '../helpers/http-servers.ts'
import { describeConformance } from './conformance.ts'
import { encodePath, filesUnder } from './support.ts'

for (const server of httpServers()) {
  describeConformance(`http (${server.name})`, async () => {
    const nginx = await server.start()
    return {
      plugin: http({ retries: 2, retryDelay: 10, allowAddresses: ['127.0.0.0/8'] }),
      ...filesUnder(nginx.root, name => new URL(`${nginx.url}/${encodePath(name)}`)),
      teardown: async () => await nginx.stop()
    }
  })
}
