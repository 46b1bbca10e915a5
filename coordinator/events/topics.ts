import { InvalidArgumentError } from '../../mesh/index.ts'

/**
 * Topic patterns as in AMQP topic exchanges: topics are dotted words, `*`
 * stands for exactly one word and `#` for any number of words, none
 * included. `transfer.*.state` matches `transfer.tr_1.state`; `agent.#`
 * matches `agent`, `agent.a1.online` and anything deeper.
 */

export type TopicMatcher = (topic: string) => boolean

export const TOPIC_LIMITS = { patterns: 20, length: 256 } as const

const WORD = /^[A-Za-z0-9_:-]+$/

/** Checks one pattern and splits it into words; throws InvalidArgumentError naming the field. */
export function parsePattern (pattern: string, field = 'topics'): string[] {
  if (pattern.length === 0 || pattern.length > TOPIC_LIMITS.length) {
    throw new InvalidArgumentError(`${field}: a pattern must have 1 to ${TOPIC_LIMITS.length} characters`)
  }
  const words = pattern.split('.')
  for (const w of words) {
    if (w === '*' || w === '#') continue
    if (w === '' || !WORD.test(w)) {
      throw new InvalidArgumentError(`${field}: '${pattern}' is not a pattern (dotted words; '*' or '#' only as a whole word)`)
    }
  }
  return words
}

/** True when the words of a topic match the words of a pattern. */
export function matchWords (pattern: readonly string[], topic: readonly string[]): boolean {
  // can[j]: the pattern words seen so far can match the first j topic words.
  // Dynamic programming keeps patterns like `#.#.#.x` linear per word.
  let can: boolean[] = new Array<boolean>(topic.length + 1).fill(false)
  can[0] = true
  for (const p of pattern) {
    const next: boolean[] = new Array<boolean>(topic.length + 1).fill(false)
    for (let j = 0; j <= topic.length; j++) {
      if (p === '#') {
        next[j] = can[j] || (j > 0 && next[j - 1])
      } else if (j > 0 && can[j - 1]) {
        next[j] = p === '*' || p === topic[j - 1]
      }
    }
    can = next
  }
  return can[topic.length]
}

/** A matcher for a list of patterns (any may match); an empty list or undefined matches every topic. */
export function compileTopics (patterns: readonly string[] | undefined, field = 'topics'): TopicMatcher {
  if (patterns === undefined || patterns.length === 0) return () => true
  if (patterns.length > TOPIC_LIMITS.patterns) throw new InvalidArgumentError(`${field}: at most ${TOPIC_LIMITS.patterns} patterns`)
  const parsed = patterns.map(p => parsePattern(p, field))
  if (parsed.some(words => words.length === 1 && words[0] === '#')) return () => true
  return topic => {
    const words = topic.split('.')
    return parsed.some(p => matchWords(p, words))
  }
}

/** `a.*.b,c.#` from a query string into its patterns. */
export function splitPatterns (text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined
  const list = text.split(',').map(p => p.trim()).filter(p => p !== '')
  return list.length > 0 ? list : undefined
}
