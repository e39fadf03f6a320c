// The one JSON path for configs: Decodable types from the strict parser's values, and where
// each value starts.
import Foundation
import SortedFormats
import XCTest
@testable import SortedFormats

final class JSONValueDecoderTests: XCTestCase {
    struct Shape: Codable, Equatable {
        struct Inner: Codable, Equatable { var theta: Double?; var kind: String }
        var count: Int
        var scale: Double
        var tied: Bool
        var name: String
        var exits: [Int]
        var seed: UInt64
        var inner: Inner
        var absent: Int?
    }

    func testDecodesWhatJSONDecoderDecodes() throws {
        let text = #"{"count": 3, "scale": 1e-5, "tied": true, "name": "x\u00e9", "exits": [1, 2], "seed": 18446744073709549568, "inner": {"theta": null, "kind": "k"}, "absent": null}"#
        let ours = try JSONValueDecoder.decode(Shape.self, from: Data(text.utf8))
        XCTAssertEqual(ours, try JSONDecoder().decode(Shape.self, from: Data(text.utf8)))
        XCTAssertEqual(ours.inner.theta, nil)
    }

    func testRefusesWhatIsNotExactlyTheType() {
        let good = #""scale": 1, "tied": false, "name": "n", "exits": [], "seed": 1, "inner": {"kind": "k"}"#
        for (count, why) in [("2.5", "not integral"), ("true", "a boolean is not a number"), (#""3""#, "a string is not a number"),
                             ("null", "null for a required value")] {
            XCTAssertThrowsError(try JSONValueDecoder.decode(Shape.self, from: Data("{\"count\": \(count), \(good)}".utf8)), why)
        }
        XCTAssertThrowsError(try JSONValueDecoder.decode(Shape.self, from: Data("{\(good)}".utf8))) { error in
            guard case DecodingError.keyNotFound(let key, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(key.stringValue, "count")
        }
    }

    func testPositionsNameEveryValueByPath() throws {
        let document = try JSONParser.parseWithPositions(Data("{\"a\": 1,\n  \"b\": {\"c\": [10,\n 20]}}".utf8))
        XCTAssertEqual(document.positions["a"], JSONPosition(line: 1, column: 7))
        XCTAssertEqual(document.positions["b"], JSONPosition(line: 2, column: 8))
        XCTAssertEqual(document.positions["b.c"], JSONPosition(line: 2, column: 14))
        XCTAssertEqual(document.positions["b.c[1]"], JSONPosition(line: 3, column: 2))
        XCTAssertEqual(document.value["b"]?["c"]?.array?.count, 2)
    }
}
