// TemporaryDirectory: a fresh folder under the system's temporary directory for one test,
// removed when the test ends (XCTest teardown block).
import Foundation
import XCTest

extension XCTestCase {
    /// Creates `<tmp>/<prefix>-<UUID>` and removes it, with everything in it, after the test.
    public func makeTemporaryDirectory(_ prefix: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
