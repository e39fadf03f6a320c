// Serving reads only what it needs of a checkpoint's stored run config: the tokenizer,
// template, window and held-out files, with the training defaults; nothing else is parsed
// or checked (a config training would now refuse still serves), and a wrong type names its key.
import XCTest
@testable import SortedInference

final class StoredServingConfigTests: XCTestCase {
    func testReadsWhatServingNeedsAndIgnoresTheRest() throws {
        let json = """
        {"model": {"hidden_size": 8}, "data": {"tokenizer": "tok.json", "template": "chatml", "validation": ["a.jsonl", "b.jsonl"]},
         "train": {"sequence_length": 512, "micro_batch_size": 1000000000}, "some_future_section": {"x": 1}}
        """
        let c = try StoredServingConfig(json: json, folder: "ckpt")
        XCTAssertEqual(c.tokenizer, "tok.json")
        XCTAssertEqual(c.template, "chatml")
        XCTAssertEqual(c.window, 512)
        XCTAssertEqual(c.validation, ["a.jsonl", "b.jsonl"])

        let defaults = try StoredServingConfig(json: "{}", folder: "ckpt")
        XCTAssertEqual([defaults.tokenizer, defaults.template], ["byte", "alpaca"])
        XCTAssertEqual(defaults.window, 256)
        XCTAssertEqual(defaults.validation, [])
    }

    func testAWrongTypeNamesItsKey() {
        for (json, key) in [(#"{"data": {"tokenizer": 3}}"#, "data.tokenizer"), (#"{"train": {"sequence_length": "long"}}"#, "train.sequence_length"),
                            (#"{"data": {"validation": [1]}}"#, "data.validation"), ("[]", "JSON object")] {
            XCTAssertThrowsError(try StoredServingConfig(json: json, folder: "ckpt")) {
                XCTAssertTrue("\($0)".contains(key) && "\($0)".hasPrefix("ckpt: "), "\($0)")
            }
        }
    }
}
