/** Which pieces a peer has, one bit each; sent in `hello` as base64. */
export class Bitfield {
  readonly size: number
  readonly bytes: Uint8Array
  private ones = 0

  constructor (size: number, bytes?: Uint8Array) {
    this.size = size
    this.bytes = new Uint8Array(Math.ceil(size / 8))
    if (bytes !== undefined) {
      this.bytes.set(bytes.subarray(0, this.bytes.byteLength))
      // Bits past `size` are not pieces: clear them so that count() stays honest.
      for (let i = size; i < this.bytes.byteLength * 8; i++) this.bytes[i >> 3] &= ~(0x80 >> (i & 7))
      for (let i = 0; i < size; i++) if (this.has(i)) this.ones++
    }
  }

  static full (size: number): Bitfield {
    const b = new Bitfield(size)
    for (let i = 0; i < size; i++) b.set(i)
    return b
  }

  static fromBase64 (size: number, text: string): Bitfield {
    return new Bitfield(size, Buffer.from(text, 'base64'))
  }

  has (i: number): boolean {
    return i >= 0 && i < this.size && (this.bytes[i >> 3] & (0x80 >> (i & 7))) !== 0
  }

  set (i: number): boolean {
    if (i < 0 || i >= this.size || this.has(i)) return false
    this.bytes[i >> 3] |= 0x80 >> (i & 7)
    this.ones++
    return true
  }

  count (): number {
    return this.ones
  }

  complete (): boolean {
    return this.ones === this.size
  }

  toBase64 (): string {
    return Buffer.from(this.bytes).toString('base64')
  }
}
