// Checkpoints on one process: exact resume, refusals of mismatched or damaged
// checkpoints with one clear error, and `--resume auto` choosing a complete checkpoint.
import Foundation
import SortedTestSupport
import XCTest
import SortedDistributed
import SortedIO
import SortedKit
@testable import SortedTraining

final class CheckpointTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("sortedtrain-ckpt") }

    func config(exits: String = "[1, 2, 3]", layers: Int = 3, maxSteps: Int = 6, tied: Bool = false) throws -> RunConfig {
        try smallRunConfig(in: directory, exits: exits, layers: layers, maxSteps: maxSteps, tied: tied)
    }

    func trainer(_ config: RunConfig) throws -> Trainer { try smallTrainer(config) }

    func testResumeIsBitExact() throws {
        for tied in [false, true] {
            let config = try config(tied: tied)
            let straight = try trainer(config)
            var straightLosses: [Double] = []
            straight.onStep = { straightLosses.append($0.loss) }
            _ = try straight.run()

            var half = config
            half.train.maxSteps = 3
            let first = try trainer(half)
            var losses: [Double] = []
            first.onStep = { losses.append($0.loss) }
            _ = try first.run()
            let manager = CheckpointManager(root: config.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator())
            let saved = try manager.save(first)

            let resumed = try trainer(config)
            resumed.model.initializeRandomly(seed: 99)   // must be overwritten by the load
            let state = try CheckpointManager.load(saved, into: resumed, allowExitChange: false)
            XCTAssertEqual(state.step, 3)
            resumed.onStep = { losses.append($0.loss) }
            let summary = try resumed.run()
            XCTAssertEqual(summary.finalStep, 6)
            XCTAssertEqual(losses, straightLosses, "per-step losses, bit for bit (tied: \(tied))")
            XCTAssertTrue(resumed.model.parameters.array() == straight.model.parameters.array(), "final parameters, bit for bit")
            XCTAssertTrue(resumed.optimizer.secondMoment.array() == straight.optimizer.secondMoment.array())
            try FileManager.default.removeItem(atPath: config.checkpoint.directory)
        }
    }

    /// Exits join (gradual: depth 2 at step 3, depth 1 at step 4 of 6) and weights ramp (4
    /// steps) across the save at step 3: the resumed run trains the same exits with the same
    /// weights, bit for bit.
    func testResumeAcrossScheduleBoundariesIsBitExact() throws {
        let config = try config(exits: #"[1, 2, 3], "scale": "linear", "curriculum": "gradual", "weight_start": 0, "warmup_steps": 4, "warmup": "cosine", "distill": {"weight": 0.5, "temperature": 2}"#)
        let straight = try trainer(config)
        var straightLines: [[String: Double]] = [], straightLosses: [Double] = [], straightKL: [[String: Double]] = []
        straight.onStep = { straightLines.append($0.exitWeights); straightLosses.append($0.loss); straightKL.append($0.exitKL ?? [:]) }
        _ = try straight.run()
        XCTAssertEqual(straightLines.map { $0.keys.sorted() }, [["3"], ["3"], ["3"], ["2", "3"], ["1", "2", "3"], ["1", "2", "3"]])
        XCTAssertEqual(straightKL.map { $0.keys.sorted() }, [[], [], [], ["2"], ["1", "2"], ["1", "2"]], "every exit but the teacher")
        XCTAssertTrue(straightKL.last!.values.allSatisfy { $0 > 0 })

        let first = try trainer(config)
        var lines: [[String: Double]] = [], losses: [Double] = []
        first.onStep = { lines.append($0.exitWeights); losses.append($0.loss) }
        _ = try first.run(until: 3)
        let saved = try CheckpointManager(root: config.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator()).save(first)
        let resumed = try trainer(config)
        _ = try CheckpointManager.load(saved, into: resumed, allowExitChange: false)
        resumed.onStep = { lines.append($0.exitWeights); losses.append($0.loss) }
        _ = try resumed.run()
        XCTAssertEqual(lines, straightLines)
        XCTAssertEqual(losses, straightLosses)
        XCTAssertTrue(resumed.model.parameters.array() == straight.model.parameters.array(), "final parameters, bit for bit")
    }

    func testCheckpointLayoutIsOneTreeWithHFNames() throws {
        let config = try config()
        let t = try trainer(config)
        _ = try t.run()
        let dir = try CheckpointManager(root: config.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator()).save(t, asStep: 6)
        let index = try HDF5File(opening: dir + "/checkpoint.h5")
        XCTAssertEqual(try index.shape(of: "model/layers/2/self_attn.q_proj.weight"), [16, 16])
        XCTAssertEqual(try index.shape(of: "optimizer/exp_avg_sq/lm_head.weight"), [30, 16])
        XCTAssertEqual(try index.readFloats("model/norm.weight"),
                       t.model.parameters.array(offset: t.model.layout.finalNorm, count: 16))
        XCTAssertEqual(try index.attribute("step"), "6")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/shard-00000-of-00001.h5"))
        XCTAssertEqual(try String(contentsOfFile: config.checkpoint.directory + "/latest", encoding: .utf8), "step-00000006\n")
    }

    func testExportCarriesTheTokenizerAndRefusesUntrainedDepths() throws {
        var base = try config(exits: "[2, 3]")
        let tokenizer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizers/bytelevel.json").path
        // The stored run config names the tokenizer the export must carry.
        var root = try JSONSerialization.jsonObject(with: Data(base.json.utf8)) as! [String: Any]
        root["data"] = ["tokenizer": tokenizer]
        base.json = String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
        let t = try trainer(base)
        try CheckpointManager(root: base.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator()).save(t, asStep: 1)
        let out = directory.appendingPathComponent("export")
        let (model, _, notes) = try ModelExporter.export(checkpoint: base.checkpoint.directory, depth: 2, format: .hf,
                                                         output: out, force: false)
        XCTAssertEqual(model.config.numHiddenLayers, 2)
        XCTAssertEqual(notes, [])
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("tokenizer.json")),
                       try Data(contentsOf: URL(fileURLWithPath: tokenizer)))
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["num_hidden_layers"] as? Int, 2)
        XCTAssertNotNil(config["eos_token_id"] as? Int)
        XCTAssertThrowsError(try ModelExporter.export(checkpoint: base.checkpoint.directory, depth: 1, format: .hf,
                                                      output: out, force: false)) {
            XCTAssertEqual($0 as? TrainingError, .depthNotAnExit(depth: 1, exits: [2, 3]))
        }
        XCTAssertNoThrow(try ModelExporter.export(checkpoint: base.checkpoint.directory, depth: 1, format: .hdf5,
                                                  output: directory.appendingPathComponent("d1.h5"), force: true))
    }

    func testRefusesOtherModelAndOtherExits() throws {
        let config = try config()
        let t = try trainer(config)
        let dir = try CheckpointManager(root: config.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator()).save(t, asStep: 0)
        let deeper = try trainer(try self.config(exits: "[2, 4]", layers: 4))
        XCTAssertThrowsError(try CheckpointManager.load(dir, into: deeper, allowExitChange: true)) {
            XCTAssertEqual($0 as? TrainingError, .checkpointModelDiffers(folder: dir, key: "num_hidden_layers", saved: "3", configured: "4"))
        }
        let otherExits = try trainer(try self.config(exits: "[3]"))
        XCTAssertThrowsError(try CheckpointManager.load(dir, into: otherExits, allowExitChange: false)) {
            XCTAssertEqual($0 as? TrainingError, .checkpointExitsDiffer(folder: dir, saved: [1, 2, 3], configured: [3]))
        }
        XCTAssertNoThrow(try CheckpointManager.load(dir, into: otherExits, allowExitChange: true))
    }

    func testDamagedCheckpointsAreClearErrors() throws {
        let config = try config()
        let t = try trainer(config)
        let manager = CheckpointManager(root: config.checkpoint.directory, keep: 5, communicator: SingleProcessCommunicator())
        let dir = try manager.save(t, asStep: 1)
        let shard = dir + "/shard-00000-of-00001.h5"

        // A flipped byte inside a dataset's data: its XXH64 digest names the dataset.
        let original = try Data(contentsOf: URL(fileURLWithPath: shard))
        var bytes = original
        let q = t.model.layout.tensor(named: "model.layers.1.self_attn.q_proj.weight")!
        let needle = t.model.parameters.array(offset: q.offset, count: 16).withUnsafeBytes { Data($0) }
        let at = bytes.range(of: needle)!.lowerBound + 5
        bytes[at] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: shard))
        XCTAssertThrowsError(try CheckpointManager.load(dir, into: try trainer(config), allowExitChange: false)) {
            XCTAssertTrue("\($0)".contains("'model/layers/1/self_attn.q_proj.weight'") && "\($0)".contains("checksum"), "\($0)")
        }

        // A truncated shard, then a missing one.
        try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: shard))
        XCTAssertThrowsError(try CheckpointManager.load(dir, into: try trainer(config), allowExitChange: false)) {
            XCTAssertTrue("\($0)".contains("cannot be") || "\($0)".contains("not a readable HDF5 file"), "\($0)")
        }
        try FileManager.default.removeItem(atPath: shard)
        XCTAssertThrowsError(try CheckpointManager.load(dir, into: try trainer(config), allowExitChange: false)) {
            XCTAssertTrue("\($0)".contains("shard-00000-of-00001.h5: is missing"), "\($0)")
        }
        // A truncated index.
        let index = dir + "/checkpoint.h5"
        let indexBytes = try Data(contentsOf: URL(fileURLWithPath: index))
        try indexBytes.prefix(100).write(to: URL(fileURLWithPath: index))
        XCTAssertThrowsError(try CheckpointManager.load(dir, into: try trainer(config), allowExitChange: false)) {
            XCTAssertTrue("\($0)".contains("checkpoint.h5: is not a readable HDF5 file"), "\($0)")
        }
    }

    func testResumeAutoPicksTheNewestCompleteCheckpoint() throws {
        let config = try config()
        let t = try trainer(config)
        let manager = CheckpointManager(root: config.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator())
        XCTAssertNil(try manager.directory.resolve("auto").folder, "nothing saved yet: a fresh start")
        for step in 1...3 { try manager.save(t, asStep: step) }
        XCTAssertEqual(manager.directory.completeCheckpoints(), ["step-00000002", "step-00000003"], "keep 2")
        XCTAssertEqual(try manager.directory.resolve("auto").folder, config.checkpoint.directory + "/step-00000003")
        // An interrupted save: a .tmp folder and a latest pointer to a folder that is gone.
        try FileManager.default.createDirectory(atPath: config.checkpoint.directory + "/step-00000004.tmp", withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: config.checkpoint.directory + "/step-00000003/checkpoint.h5")
        let resolution = try manager.directory.resolve("auto")
        XCTAssertEqual(resolution.folder, config.checkpoint.directory + "/step-00000002")
        XCTAssertEqual(resolution.skipped.map(\.folder), [config.checkpoint.directory + "/step-00000003"], "the damaged one is reported")
        XCTAssertThrowsError(try manager.directory.resolve(config.checkpoint.directory + "/step-00000003"))

        // Pruning counts intact checkpoints only: the next save keeps step 2 beside itself.
        try manager.save(t, asStep: 4)
        XCTAssertEqual(manager.directory.completeCheckpoints(), ["step-00000002", "step-00000004"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: config.checkpoint.directory + "/step-00000003"), "a damaged checkpoint is left alone")

        // When every checkpoint is damaged, auto finds none but names each with its reason
        // (train then stops, export says so): never a fresh start.
        for step in [2, 4] { try FileManager.default.removeItem(atPath: config.checkpoint.directory + "/step-0000000\(step)/shard-00000-of-00001.h5") }
        let none = try manager.directory.resolve("auto")
        XCTAssertNil(none.folder)
        for step in 2...4 { XCTAssertTrue(none.skippedSummary.contains("step-0000000\(step):"), none.skippedSummary) }
        XCTAssertThrowsError(try CheckpointDirectory.checkpointFolder(for: config.checkpoint.directory)) {
            XCTAssertEqual($0 as? ModelLookupError, .noIntactCheckpoint(root: config.checkpoint.directory, skipped: none.skippedSummary))
        }
    }

    func testShardsAndIndexMustComeFromOneSave() throws {
        let config = try config()
        let t = try trainer(config)
        let manager = CheckpointManager(root: config.checkpoint.directory, keep: 5, communicator: SingleProcessCommunicator())
        let first = try manager.save(t, asStep: 1)
        _ = try t.run(until: 2)
        let second = try manager.save(t, asStep: 2)
        let shard = "/shard-00000-of-00001.h5", index = "/checkpoint.h5"
        let fm = FileManager.default
        func swapped(_ name: String, _ body: () throws -> Void) throws {
            let saved = second + name + ".saved"
            try fm.copyItem(atPath: second + name, toPath: saved)
            try fm.removeItem(atPath: second + name)
            try fm.copyItem(atPath: first + name, toPath: second + name)
            defer { try? fm.removeItem(atPath: second + name); try? fm.moveItem(atPath: saved, toPath: second + name) }
            try body()
        }
        // Step 1's shard in step 2's folder, then step 1's index over step 2's shard.
        try swapped(shard) {
            XCTAssertThrowsError(try CheckpointFiles.readState(directory: second)) {
                XCTAssertTrue("\($0)".contains("belongs to another save (run \(manager.runID), step 1)"), "\($0)")
            }
        }
        try swapped(index) {
            XCTAssertThrowsError(try CheckpointFiles.readState(directory: second)) {
                XCTAssertTrue("\($0)".contains("mixes two saves"), "\($0)")
            }
        }
        // A shard of another run with the same step: the run id differs.
        let other = CheckpointManager(root: directory.appendingPathComponent("other").path, keep: 5, communicator: SingleProcessCommunicator())
        let foreign = try other.save(t, asStep: 2)
        try fm.removeItem(atPath: second + shard)
        try fm.copyItem(atPath: foreign + shard, toPath: second + shard)
        XCTAssertThrowsError(try CheckpointFiles.readState(directory: second)) {
            XCTAssertTrue("\($0)".contains("run \(other.runID)"), "\($0)")
        }
        XCTAssertNotEqual(manager.runID, other.runID)
    }

    func testADamagedRunStateIsRefused() throws {
        let config = try config()
        let t = try trainer(config)
        let dir = try CheckpointManager(root: config.checkpoint.directory, keep: 5, communicator: SingleProcessCommunicator()).save(t, asStep: 3)
        let file = try HDF5File(opening: dir + "/checkpoint.h5", writable: true)
        let state = try file.attribute("state")
        try file.setAttribute("state", string: state.replacingOccurrences(of: "\"step\":3", with: "\"step\":4"))
        try file.flush()
        XCTAssertThrowsError(try CheckpointFiles.readState(directory: dir)) {
            XCTAssertTrue("\($0)".contains("damaged run state"), "\($0)")
        }
    }

    func testFormatTwoCheckpointsStillLoad() throws {
        let config = try config()
        let t = try trainer(config)
        let dir = try CheckpointManager(root: config.checkpoint.directory, keep: 5, communicator: SingleProcessCommunicator()).save(t, asStep: 2)
        // What the previous sortedtrain wrote: no run id, no digests, no run-state digest.
        do {
            let file = try HDF5File(opening: dir + "/checkpoint.h5", writable: true)
            var state = try JSONSerialization.jsonObject(with: Data(try file.attribute("state").utf8)) as! [String: Any]
            state["formatVersion"] = 2
            state["runID"] = nil
            state["digests"] = nil
            try file.setAttribute("state", string: String(decoding: try JSONSerialization.data(withJSONObject: state), as: UTF8.self))
            file.removeAttribute("state_xxh64")
            try file.flush()
        }
        let resumed = try trainer(config)
        let loaded = try CheckpointManager.load(dir, into: resumed, allowExitChange: false)
        XCTAssertEqual(loaded.formatVersion, 2)
        XCTAssertEqual(loaded.runID, "")
        XCTAssertTrue(resumed.model.parameters.array() == t.model.parameters.array())
    }

    func testTheRunStateRecordsEveryDatasetDigest() throws {
        let config = try config()
        let t = try trainer(config)
        let dir = try CheckpointManager(root: config.checkpoint.directory, keep: 5, communicator: SingleProcessCommunicator()).save(t, asStep: 1)
        let state = try CheckpointFiles.readState(directory: dir)
        XCTAssertEqual(state.digests.count, 3 * t.model.layout.tensors.count, "weights and both moments")
        // The digest the index recorded is the one the shard's dataset carries.
        let shard = try HDF5File(opening: dir + "/shard-00000-of-00001.h5")
        let q = t.model.layout.tensor(named: "model.layers.0.self_attn.q_proj.weight")!
        var values = [Float](repeating: 0, count: q.count)
        let digest = try values.withUnsafeMutableBufferPointer {
            try shard.read("model/layers/0/self_attn.q_proj.weight", into: $0.baseAddress!, count: q.count)
        }
        XCTAssertEqual(state.digests["model/layers/0/self_attn.q_proj.weight"], String(format: "%016llx", digest))
    }
}

extension CheckpointManager {
    /// Saves `trainer` as if it stood at `step`: the folder tests need many steps, not many runs.
    @discardableResult
    func save(_ trainer: Trainer, asStep step: Int) throws -> String {
        trainer.restore(TrainingState(step: step, sampleCursor: trainer.state.sampleCursor,
                                      optimizerSteps: trainer.state.optimizerSteps))
        return try save(trainer)
    }
}
