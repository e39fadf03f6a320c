// HDF5 round trips through the C module: datasets with checksums, groups, attributes,
// and clear errors for missing datasets and corrupted bytes.
import Foundation
import SortedTestSupport
import XCTest
@testable import SortedIO

final class HDF5FileTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("sortedtrain-h5") }

    func testWriteAndReadDatasetsAndAttributes() throws {
        let path = directory.appendingPathComponent("t.h5").path
        let values = (0..<(600 * 700)).map { Float($0) * 0.25 - 3 }
        do {
            let file = try HDF5File(creating: path)
            try file.write("model/layers/7/self_attn.q_proj.weight", floats: values, shape: [600, 700])
            try file.write("state/cursor", int64s: [42, -1], shape: [2])
            try file.setAttribute("config", string: #"{"exits": [2, 4]} — ünïcode"#)
            try file.flush()
        }
        let file = try HDF5File(opening: path)
        XCTAssertTrue(file.exists("model/layers/7/self_attn.q_proj.weight"))
        XCTAssertFalse(file.exists("model/layers/8/self_attn.q_proj.weight"))
        XCTAssertEqual(try file.shape(of: "model/layers/7/self_attn.q_proj.weight"), [600, 700])
        XCTAssertEqual(try file.readFloats("model/layers/7/self_attn.q_proj.weight"), values)
        XCTAssertEqual(try file.readInt64s("state/cursor"), [42, -1])
        XCTAssertEqual(try file.attribute("config"), #"{"exits": [2, 4]} — ünïcode"#)
        XCTAssertThrowsError(try file.readFloats("model/nope")) { error in
            XCTAssertTrue("\(error)".contains("has no dataset 'model/nope'"), "\(error)")
        }
    }

    func testCorruptedBytesFailTheChecksumWithTheDatasetName() throws {
        // The digest stored with the dataset must catch a damaged value.
        let path = directory.appendingPathComponent("c.h5").path
        let values = [Float](repeating: 1.5, count: 4096)
        do {
            let file = try HDF5File(creating: path)
            try file.write("w", floats: values, shape: [64, 64])
        }
        // Flip bytes inside the raw data: find the run of 1.5f values and damage it.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let pattern = Data(repeating: 0, count: 0) + withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian) { Data($0) }
        let at = bytes.range(of: pattern + pattern + pattern + pattern)!.lowerBound + 100
        bytes[at] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        let file = try HDF5File(opening: path)
        XCTAssertThrowsError(try file.readFloats("w")) { error in
            XCTAssertTrue("\(error)".contains("'w'") && "\(error)".contains("checksum"), "\(error)")
        }
    }

    func testMissingAndNonHDF5FilesAreClearErrors() throws {
        XCTAssertThrowsError(try HDF5File(opening: directory.appendingPathComponent("none.h5").path)) {
            XCTAssertTrue("\($0)".contains("does not exist"))
        }
        let junk = directory.appendingPathComponent("junk.h5")
        try Data("not hdf5".utf8).write(to: junk)
        XCTAssertThrowsError(try HDF5File(opening: junk.path)) { XCTAssertTrue("\($0)".contains("not a readable HDF5 file")) }
    }
}

final class XXH64Tests: XCTestCase {
    /// Reference digests from Python's xxhash.xxh64(data, seed=0).
    func testMatchesTheReferenceImplementation() {
        let cases: [([UInt8], UInt64)] = [
            ([], 0xef46db3751d8e999), (Array("a".utf8), 0xd24ec4f1a98c6e5b), (Array("abc".utf8), 0x44bc2cf5ad770999),
            (Array("0123456789abcdef0123456789abcdef".utf8), 0x642a94958e71e6c5),
            (Array((0..<768).map { UInt8($0 % 256) }), 0x8e03c838c596036f),
        ]
        for (bytes, expected) in cases {
            XCTAssertEqual(bytes.withUnsafeBytes { XXH64.digest($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: bytes.count) },
                           expected, "\(bytes.count) bytes")
        }
    }
}
