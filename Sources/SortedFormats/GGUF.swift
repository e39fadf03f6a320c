// GGUF: reads llama.cpp's model format: a header, typed metadata key/values (the tokenizer
// lives there), a tensor directory, and tensor data dequantised to Float (F32, F16, BF16,
// Q8_0, Q4_0, Q4_1). Layout per ggml's gguf.md; every length and offset is bounds-checked.
// GGUFWriter (GGUFWriter.swift) writes the same layout.
import Foundation
import SortedKit

public struct GGUFFile {
    /// A .gguf name, or a file that starts with GGUF's magic.
    public static func isGGUF(_ url: URL) -> Bool {
        if url.pathExtension == "gguf" { return true }
        guard let h = FileHandle(forReadingAtPath: url.path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data("GGUF".utf8)   // readData(ofLength:) traps on a folder
    }

    /// A metadata value, typed as in the file.
    public enum Value: Equatable, CustomStringConvertible {
        case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
        case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
        case float32(Float), float64(Double)
        case bool(Bool)
        case string(String)
        case array([Value])

        public var string: String? { if case .string(let s) = self { return s }; return nil }
        public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
        public var array: [Value]? { if case .array(let a) = self { return a }; return nil }

        /// Any integer type as Int (nil for non-integers and UInt64 values above Int.max).
        public var int: Int? {
            switch self {
            case .uint8(let v): return Int(v)
            case .int8(let v): return Int(v)
            case .uint16(let v): return Int(v)
            case .int16(let v): return Int(v)
            case .uint32(let v): return Int(v)
            case .int32(let v): return Int(v)
            case .uint64(let v): return Int(exactly: v)
            case .int64(let v): return Int(v)
            default: return nil
            }
        }

        /// Any numeric type as Double.
        public var double: Double? {
            switch self {
            case .float32(let v): return Double(v)
            case .float64(let v): return v
            default: return int.map(Double.init)
            }
        }

        /// An array of strings.
        public var strings: [String]? {
            guard let a = array else { return nil }
            let v = a.compactMap(\.string)
            return v.count == a.count ? v : nil
        }
        /// An array of integers.
        public var ints: [Int]? {
            guard let a = array else { return nil }
            let v = a.compactMap(\.int)
            return v.count == a.count ? v : nil
        }
        /// An array of numbers as Float.
        public var floats: [Float]? {
            guard let a = array else { return nil }
            let v = a.compactMap { $0.double.map(Float.init) }
            return v.count == a.count ? v : nil
        }

        public var description: String {
            switch self {
            case .string(let s): return s.count > 60 ? "\"\(s.prefix(57))...\"" : "\"\(s)\""
            case .array(let a): return "[\(a.count) values]"
            case .bool(let b): return String(b)
            case .float32(let v): return String(v)
            case .float64(let v): return String(v)
            default: return String(int ?? 0)
            }
        }
    }

    /// ggml tensor types (the ones sortedtrain dequantises, and names for the rest).
    public struct TensorType: Equatable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let f32 = TensorType(rawValue: 0)
        public static let f16 = TensorType(rawValue: 1)
        public static let q4_0 = TensorType(rawValue: 2)
        public static let q4_1 = TensorType(rawValue: 3)
        public static let q8_0 = TensorType(rawValue: 8)
        public static let bf16 = TensorType(rawValue: 30)

        static let names: [UInt32: String] = [
            0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
            10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
            17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
            24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
        ]
        /// (elements per block, bytes per block) for every type whose size is known.
        static let blockLayout: [UInt32: (Int, Int)] = [
            0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
            10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
            24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2),
        ]

        public var description: String { Self.names[rawValue] ?? "type \(rawValue)" }
        public var isDequantizable: Bool { [0, 1, 2, 3, 8, 30].contains(rawValue) }
    }

    public struct TensorInfo {
        public let name: String
        /// Dimensions in GGUF order: dimensions[0] varies fastest (ggml's ne[0]).
        public let dimensions: [Int]
        public let type: TensorType
        /// Byte offset from the start of the file.
        public let fileOffset: Int
        public let byteCount: Int
        /// Row-major shape, slowest first: the HF `nn.Linear` [out, in] order for weights.
        public var shape: [Int] { dimensions.reversed() }
        /// Checked against overflow when the file was read.
        public var count: Int { dimensions.reduce(1, *) }
    }

    public let path: String
    public let version: Int
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let metadata: [String: Value]
    /// Tensors in file order.
    public let tensors: [TensorInfo]
    public let alignment: Int
    private let tensorIndex: [String: Int]
    private let data: Data

    public init(contentsOf url: URL) throws {
        path = url.path
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw FormatError(file: url.path, "cannot be read: \(error.localizedDescription)")
        }
        var reader = Reader(data: data, path: url.path)
        let magic = try reader.bytes(4, "the magic number")
        guard magic == Array("GGUF".utf8) else {
            throw FormatError(file: path, "is not a GGUF file (it does not start with 'GGUF')")
        }
        let v = Int(try reader.u32("the version"))
        guard v == 2 || v == 3 else {
            throw FormatError(file: path, "has GGUF version \(v); sortedtrain reads versions 2 and 3")
        }
        version = v
        let tensorCount = try reader.count("the tensor count", minimumBytesEach: 24)
        let kvCount = try reader.count("the metadata count", minimumBytesEach: 12)
        var keys: [String] = []
        var meta: [String: Value] = [:]
        for _ in 0..<kvCount {
            let key = try reader.string("a metadata key")
            let type = try reader.u32("the type of \(GGUFFile.shown(key))")
            meta[key] = try reader.value(type: type, key: key, depth: 0)
            keys.append(key)
        }
        metadataKeys = keys
        metadata = meta
        let align = meta["general.alignment"]?.int ?? 32
        guard align > 0, align & (align - 1) == 0 else {
            throw FormatError(file: path, "general.alignment \(align) is not a power of two")
        }
        alignment = align
        var infos: [(String, [Int], UInt32, UInt64)] = []
        for _ in 0..<tensorCount {
            let name = try reader.string("a tensor name")
            let nDims = Int(try reader.u32("the rank of tensor \(GGUFFile.shown(name))"))
            guard nDims >= 1 && nDims <= 8 else { throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) has \(nDims) dimensions; the file is corrupt") }
            var dims: [Int] = []
            for _ in 0..<nDims {
                let d = try reader.u64("a dimension of tensor \(GGUFFile.shown(name))")
                guard d > 0 && d < 1 << 40 else { throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) has dimension \(d); the file is corrupt") }
                dims.append(Int(d))
            }
            let type = try reader.u32("the type of tensor \(GGUFFile.shown(name))")
            let offset = try reader.u64("the offset of tensor \(GGUFFile.shown(name))")
            infos.append((name, dims, type, offset))
        }
        let dataStart = (reader.offset + align - 1) / align * align
        var list: [TensorInfo] = []
        var index: [String: Int] = [:]
        for (name, dims, rawType, offset) in infos {
            let type = TensorType(rawValue: rawType)
            guard let (blockSize, blockBytes) = TensorType.blockLayout[rawType] else {
                throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) has unknown ggml type \(type)")
            }
            guard let count = MemoryBudget.product(dims) else {
                throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) has dimensions \(dims), more elements than can be addressed; the file is corrupt")
            }
            guard dims[0] % blockSize == 0 else {
                throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) has \(dims[0]) columns, not a multiple of the \(type) block size \(blockSize)")
            }
            let byteCount = count / blockSize * blockBytes
            guard offset % UInt64(align) == 0 else {
                throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) starts at data offset \(offset), not a multiple of the alignment \(align); the file is corrupt")
            }
            guard offset <= UInt64(data.count), byteCount <= data.count, dataStart + Int(offset) + byteCount <= data.count else {
                throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) (\(byteCount) bytes at offset \(offset)) lies beyond the end of the file (\(data.count) bytes); the file is truncated")
            }
            guard index[name] == nil else { throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) appears twice") }
            index[name] = list.count
            list.append(TensorInfo(name: name, dimensions: dims, type: type, fileOffset: dataStart + Int(offset), byteCount: byteCount))
        }
        // Two tensors sharing bytes is a damaged directory, not a model.
        let byPlace = list.sorted { ($0.fileOffset, $0.byteCount) < ($1.fileOffset, $1.byteCount) }
        for (previous, next) in zip(byPlace, byPlace.dropFirst()) where next.fileOffset < previous.fileOffset + previous.byteCount {
            throw FormatError(file: path, "tensors \(GGUFFile.shown(previous.name)) and \(GGUFFile.shown(next.name)) overlap in the file; the file is corrupt")
        }
        tensors = list
        tensorIndex = index
    }

    public func tensor(_ name: String) throws -> TensorInfo {
        guard let i = tensorIndex[name] else { throw FormatError(file: path, "has no tensor \(GGUFFile.shown(name))") }
        return tensors[i]
    }

    /// The file's bytes (mapped, not read into memory), for reading tensors in place at their
    /// `fileOffset`.
    public func withBytes<R>(_ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        try data.withUnsafeBytes { try body($0.baseAddress!) }
    }

    /// Lets the system take back the mapped pages of `tensor` once it has been copied out: they
    /// stop counting toward the process's memory (reading the tensor again maps them back).
    public func releasePages(of tensor: TensorInfo) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        data.withUnsafeBytes { raw in
            let base = Int(bitPattern: raw.baseAddress!)
            let start = (base + tensor.fileOffset + page - 1) / page * page
            let end = (base + tensor.fileOffset + tensor.byteCount) / page * page
            guard end > start else { return }
            _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
        }
    }

    /// The tensor dequantised to Float, row-major in `shape` order.
    public func floats(_ name: String) throws -> [Float] {
        let t = try tensor(name)
        guard t.type.isDequantizable else {
            throw FormatError(file: path, "tensor \(GGUFFile.shown(name)) is \(t.type); sortedtrain dequantises F32, F16, BF16, Q8_0, Q4_0 and Q4_1")
        }
        var out = [Float](repeating: 0, count: t.count)
        data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + t.fileOffset
            out.withUnsafeMutableBufferPointer { dst in
                GGUFFile.dequantize(type: t.type, from: src, count: t.count, into: dst.baseAddress!)
            }
        }
        return out
    }

    /// Dequantises `count` values of `type` (ggml block layouts, little-endian).
    public static func dequantize(type: TensorType, from src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        @inline(__always) func half(_ p: UnsafeRawPointer) -> Float {
            Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))))
        }
        switch type {
        case .f32:
            for i in 0..<count { dst[i] = Float(bitPattern: UInt32(littleEndian: (src + 4 * i).loadUnaligned(as: UInt32.self))) }
        case .f16:
            for i in 0..<count { dst[i] = half(src + 2 * i) }
        case .bf16:
            for i in 0..<count { dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: (src + 2 * i).loadUnaligned(as: UInt16.self))) << 16) }
        case .q8_0:
            // Block of 32: f16 scale d, 32 × int8 q; x = d·q.
            for b in 0..<(count / 32) {
                let block = src + 34 * b
                let d = half(block)
                let q = (block + 2).assumingMemoryBound(to: Int8.self)
                for j in 0..<32 { dst[32 * b + j] = d * Float(q[j]) }
            }
        case .q4_0:
            // Block of 32: f16 scale d, 16 bytes; low nibbles are x[0..<16], high x[16..<32]; x = d·(q − 8).
            for b in 0..<(count / 32) {
                let block = src + 18 * b
                let d = half(block)
                let q = (block + 2).assumingMemoryBound(to: UInt8.self)
                for j in 0..<16 {
                    dst[32 * b + j] = d * Float(Int(q[j] & 0x0F) - 8)
                    dst[32 * b + j + 16] = d * Float(Int(q[j] >> 4) - 8)
                }
            }
        case .q4_1:
            // Block of 32: f16 scale d, f16 minimum m, 16 bytes of nibbles as Q4_0; x = d·q + m.
            for b in 0..<(count / 32) {
                let block = src + 20 * b
                let d = half(block)
                let m = half(block + 2)
                let q = (block + 4).assumingMemoryBound(to: UInt8.self)
                for j in 0..<16 {
                    dst[32 * b + j] = d * Float(q[j] & 0x0F) + m
                    dst[32 * b + j + 16] = d * Float(q[j] >> 4) + m
                }
            }
        default:
            preconditionFailure("dequantize called for \(type)")
        }
    }

    /// A name from the file as it may appear in a one-line message: quoted, control
    /// characters escaped, long names shortened (a corrupt file can hold anything there).
    public static func shown(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars.prefix(80) {
            if scalar.value < 0x20 || scalar.value == 0x7F || (scalar.value >= 0x80 && scalar.value < 0xA0) || scalar == "\u{2028}" || scalar == "\u{2029}" {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return "'" + out + (name.unicodeScalars.count > 80 ? "...'" : "'")
    }

    /// A bounds-checked little-endian cursor over the file.
    private struct Reader {
        let data: Data
        let path: String
        var offset = 0

        func truncated(_ what: @autoclosure () -> String) -> FormatError {
            FormatError(file: path, "ends at byte \(data.count) while reading \(what()); the file is truncated or corrupt")
        }

        mutating func bytes(_ n: Int, _ what: @autoclosure () -> String) throws -> [UInt8] {
            guard n >= 0, n <= data.count - offset else { throw truncated(what()) }
            defer { offset += n }
            return [UInt8](data[(data.startIndex + offset)..<(data.startIndex + offset + n)])
        }

        mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
            let n = MemoryLayout<T>.size
            guard n <= data.count - offset else { throw truncated(what()) }
            let v = data.withUnsafeBytes { T(littleEndian: ($0.baseAddress! + offset).loadUnaligned(as: T.self)) }
            offset += n
            return v
        }

        mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try load(UInt32.self, what()) }
        mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try load(UInt64.self, what()) }

        /// A u64 count, checked against the bytes left so a corrupt count cannot allocate wildly.
        mutating func count(_ what: String, minimumBytesEach: Int) throws -> Int {
            let c = try u64(what)
            guard c <= UInt64(max(0, data.count - offset) / max(1, minimumBytesEach)) else {
                throw FormatError(file: path, "\(what) is \(c), more than the file can hold; the file is corrupt")
            }
            return Int(c)
        }

        mutating func string(_ what: @autoclosure () -> String) throws -> String {
            let n = try u64("the length of \(what())")
            guard n <= UInt64(data.count - offset) else { throw truncated(what()) }
            let s = data.withUnsafeBytes { raw in
                String(decoding: UnsafeRawBufferPointer(start: raw.baseAddress! + offset, count: Int(n)), as: UTF8.self)
            }
            offset += Int(n)
            return s
        }

        mutating func value(type: UInt32, key: String, depth: Int) throws -> Value {
            func what() -> String { "the value of \(GGUFFile.shown(key))" }
            switch type {
            case 0: return .uint8(try load(UInt8.self, what()))
            case 1: return .int8(try load(Int8.self, what()))
            case 2: return .uint16(try load(UInt16.self, what()))
            case 3: return .int16(try load(Int16.self, what()))
            case 4: return .uint32(try load(UInt32.self, what()))
            case 5: return .int32(try load(Int32.self, what()))
            case 6: return .float32(Float(bitPattern: try load(UInt32.self, what())))
            case 7:
                let b = try load(UInt8.self, what())
                guard b <= 1 else { throw FormatError(file: path, "\(GGUFFile.shown(key)) holds bool byte \(b); the file is corrupt") }
                return .bool(b == 1)
            case 8: return .string(try string(what()))
            case 9:
                guard depth < 4 else { throw FormatError(file: path, "\(GGUFFile.shown(key)) nests arrays too deeply; the file is corrupt") }
                let elementType = try u32("the element type of \(GGUFFile.shown(key))")
                let minimum: Int
                switch elementType {
                case 0, 1, 7: minimum = 1
                case 2, 3: minimum = 2
                case 4, 5, 6: minimum = 4
                case 8, 9, 10, 11, 12: minimum = 8
                default: throw FormatError(file: path, "\(GGUFFile.shown(key)) is an array of unknown type \(elementType); the file is corrupt")
                }
                let n = try count("the length of \(GGUFFile.shown(key))", minimumBytesEach: minimum)
                var items: [Value] = []
                items.reserveCapacity(n)
                for _ in 0..<n { items.append(try value(type: elementType, key: key, depth: depth + 1)) }
                return .array(items)
            case 10: return .uint64(try load(UInt64.self, what()))
            case 11: return .int64(try load(Int64.self, what()))
            case 12: return .float64(Double(bitPattern: try load(UInt64.self, what())))
            default:
                throw FormatError(file: path, "\(GGUFFile.shown(key)) has unknown value type \(type); the file is corrupt")
            }
        }
    }
}
