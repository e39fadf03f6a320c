// ByteTokenizer: the built-in tokenizer for models trained from scratch (the demo): ids
// 0...255 are the UTF-8 bytes, then BOS, EOS and PAD. Lossless by construction.

public final class ByteTokenizer: Tokenizer {
    public static let bos: Int32 = 256
    public static let eos: Int32 = 257
    public static let pad: Int32 = 258

    public init() {}

    public var vocabularySize: Int { 259 }
    public var bosID: Int32? { Self.bos }
    public var eosID: Int32? { Self.eos }
    public var padID: Int32? { Self.pad }
    public var addsBOS: Bool { true }
    public var isLossless: Bool { true }
    public var summary: String { "built-in byte tokenizer, 259 ids (256 bytes, BOS 256, EOS 257, PAD 258)" }

    /// Special tokens are never read from text: every byte of the text is a byte id.
    public func encode(_ text: String, addSpecialTokens: Bool, parseSpecial: Bool) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count + 1)
        if addSpecialTokens { out.append(Self.bos) }
        for b in text.utf8 { out.append(Int32(b)) }
        return out
    }

    /// Invalid UTF-8 (a sequence cut in the middle) decodes to U+FFFD.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        var out = ""
        for id in ids {
            if id >= 0 && id < 256 { bytes.append(UInt8(id)); continue }
            if skipSpecialTokens { continue }
            out += String(decoding: bytes, as: UTF8.self)
            bytes.removeAll()
            out += token(forID: id) ?? ""
        }
        return out + String(decoding: bytes, as: UTF8.self)
    }

    public func id(forToken token: String) -> Int32? {
        switch token {
        case "<bos>": return Self.bos
        case "<eos>": return Self.eos
        case "<pad>": return Self.pad
        default:
            let u = Array(token.utf8)
            guard u.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">"),
                  let v = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) else { return nil }
            return Int32(v)
        }
    }

    public func token(forID id: Int32) -> String? {
        switch id {
        case 0..<256:
            let hex = String(id, radix: 16, uppercase: true)
            return "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
        case Self.bos: return "<bos>"
        case Self.eos: return "<eos>"
        case Self.pad: return "<pad>"
        default: return nil
        }
    }
}
