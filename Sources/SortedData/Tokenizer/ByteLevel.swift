// ByteLevel: GPT-2's reversible map from the 256 byte values to printable characters, used by
// byte-level BPE vocabularies (GPT-2, LLaMA-3, SmolLM2): a space is stored as "Ġ".

enum ByteLevel {
    /// The character each byte is written as.
    static let scalarForByte: [Unicode.Scalar] = {
        var printable: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var scalars = printable
        var extra = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            scalars.append(256 + extra)
            extra += 1
        }
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        for (b, s) in zip(printable, scalars) { table[b] = Unicode.Scalar(UInt32(s))! }
        return table
    }()

    /// The byte each alphabet character stands for (indexed by scalar value < 0x144), or -1.
    static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in scalarForByte.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    /// The raw bytes of a byte-level token string, or nil when a character is outside the
    /// alphabet (such tokens are added tokens, never produced by merges).
    static func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for s in token.unicodeScalars {
            guard s.value < 0x144, byteForScalar[Int(s.value)] >= 0 else { return nil }
            out.append(UInt8(byteForScalar[Int(s.value)]))
        }
        return out
    }

    /// The byte-level spelling of raw bytes.
    static func spelling(of bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(scalarForByte[Int(b)]) }
        return String(s)
    }
}
