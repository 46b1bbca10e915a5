export const CONTROL_PROTOCOL = '/staccato/control/1'
export const DATA_PROTOCOL = '/staccato/data/1'
export const SWARM_PROTOCOL = '/staccato/swarm/1'
export const TREE_PROTOCOL = '/staccato/tree/1'
