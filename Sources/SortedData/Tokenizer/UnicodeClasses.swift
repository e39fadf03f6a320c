// UnicodeClasses: the character classes that pre-tokenizer patterns use (\p{L}, \p{N}, \s),
// read from a table built once for the Basic Multilingual Plane, and a UTF-8 decoder.

/// Bit flags: letter (\p{L}), number (\p{N}), whitespace (\s, Unicode White_Space).
enum CharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let whitespace: UInt8 = 4

    static func compute(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return 0 }
        let p = scalar.properties
        if p.isWhitespace { return whitespace }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return 0
        }
    }
}

/// The class of every BMP scalar, built once (about 65 KB); scalars above the BMP are
/// classified on demand.
struct UnicodeClasses {
    let table: UnsafePointer<UInt8>

    static let shared = UnicodeClasses()

    private init() {
        let t = UnsafeMutablePointer<UInt8>.allocate(capacity: 0x10000)
        for v in 0..<UInt32(0x10000) { t[Int(v)] = CharClass.compute(v) }
        table = UnsafePointer(t)
    }

    @inline(__always) func classOf(_ scalar: UInt32) -> UInt8 {
        scalar < 0x10000 ? table[Int(scalar)] : CharClass.compute(scalar)
    }
}

/// Decodes the scalar that starts at `p[i]` in valid UTF-8: (value, byte length).
@inline(__always) func decodeUTF8(_ p: UnsafePointer<UInt8>, _ i: Int) -> (UInt32, Int) {
    let b0 = UInt32(p[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(p[i + 1] & 0x3F), 2) }
    if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(p[i + 1] & 0x3F) << 6 | UInt32(p[i + 2] & 0x3F), 3) }
    return ((b0 & 0x07) << 18 | UInt32(p[i + 1] & 0x3F) << 12 | UInt32(p[i + 2] & 0x3F) << 6 | UInt32(p[i + 3] & 0x3F), 4)
}

/// Byte length of the UTF-8 sequence that starts with `b0`.
@inline(__always) func utf8Length(_ b0: UInt8) -> Int {
    b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
}
