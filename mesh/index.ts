/**
 * mesh/: what the coordinator and agents share. It imports no other unit.
 * Listed name by name, so that what other units may use is a decision made
 * here, not whatever a file happens to export.
 */
export {
  StaccatoError, NotFoundError, PermissionDeniedError, NoSpaceError, SourceChangedError, ChecksumMismatchError,
  UnsupportedError, InvalidArgumentError, IsADirectoryError, ExistsError, ProtocolError, TicketError, NetworkError, AgentOfflineError, TimeoutError,
  CanceledError, UnavailableError, InternalError, toStaccatoError, errorFields, fromErrorInfo
} from './errors.ts'
export type { ErrorInfo } from './errors.ts'
export { AddressInUseError, listenError, meshListenError } from './listen-errors.ts'
export type { ListenSite } from './listen-errors.ts'
export { baseName, isValidAgentName, namesDirectory, parseLocation, pluginUrl } from './location.ts'
export type { Location } from './location.ts'
export { loadOrCreateIdentity } from './identity.ts'
export { createMeshNode, meshMuxer } from './node.ts'
export { nodeNoiseCrypto } from './noise-crypto.ts'
export { SECURE_CHANNEL_PROTOCOL, secureChannel } from './secure-channel.ts'
export { MAX_RECORD_BYTES } from './record-stream.ts'
export { ephemeral, newSession, deriveKeys, SESSION_BYTES } from './direct-keys.ts'
export type { DirectKeys, Ephemeral, KeyContext } from './direct-keys.ts'
export { RecordWriter, RecordReader, TYPE_DATA, TYPE_END, IDLE_TIMEOUT_MS, WRITE_HIGH_WATER } from './direct-records.ts'
export type { ReaderOptions } from './direct-records.ts'
export { noteGarbage, GARBAGE_BYTES } from './garbage.ts'
export { DirectListener, connectDirect, HELLO_TIMEOUT_MS, CONNECT_TIMEOUT_MS, MAX_UNCLAIMED } from './direct-listener.ts'
export type { DirectListenerOptions, ConnectOptions } from './direct-listener.ts'
export type { SecureChannelInit } from './secure-channel.ts'
export type { MeshNode, MeshNodeOptions } from './node.ts'
export { MAX_FRAME_BYTES, encodeFrame, send, sendFrame, FrameReader } from './wire.ts'
// Each schema below is also the type of the message it validates.
export {
  WIRE_VERSION, DataRequest, DataResponse, DataTrailer, DirectFallback, ControlEnvelope, Job, SwarmMessage, Manifest, ImageManifest, TreeManifest, TREE_TABLE_BYTES,
  ChecksumMode, CHECKSUM_MODES, Overwrite, OVERWRITE_MODES, MAX_STREAMS, SyncMode, SYNC_MODES, TREE_BATCH, TREE_READ_FILES, TREE_PACK_BYTES, TreeEntry, TreeRequest, TreeMessage, TreeOptions, TreeFileState, TREE_FILE_STATES, decode
} from './messages.ts'
export { MAX_REGISTER_OUTCOMES, AgentToCoordinator, CoordinatorToAgent } from './control-methods.ts'
export type {
  SwarmPeerInfo, ControlMethod, ControlParams, ControlHandlers, Direction, Params, Result, CallMethod, CastMethod, FileCounts
} from './control-methods.ts'
export { TicketClaims, signTicket, issuerKey, anyIssuer, verifyTicket } from './ticket.ts'
export type { TicketIssuer } from './ticket.ts'
export type { TicketRequest } from './ticket.ts'
export { CONTROL_PROTOCOL, DATA_PROTOCOL, SWARM_PROTOCOL, TREE_PROTOCOL } from './protocol-ids.ts'
export { MAX_CALLS_IN_FLIGHT, MAX_UNSENT_BYTES, ControlChannel, AGENT_SIDE, COORDINATOR_SIDE } from './control-channel.ts'
export type { ControlSide, ControlTable, ControlOptions } from './control-channel.ts'
export { AddressRefusedError, parseAddressAllow, AddressPolicy, hostOf } from './address-policy.ts'
export type { AddressClass } from './address-policy.ts'
export { PACKAGE_VERSION } from './version.ts'
export { Serial } from './serial.ts'
