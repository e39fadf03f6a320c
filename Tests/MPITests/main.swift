// Multi-rank checks of SortedDistributed, run by launch/test under `mpirun -np N`.
// Every rank runs every check; rank 0 prints one line per check and the summary line.
import Foundation
import SortedDistributed
import SortedIO
import SortedKit
import SortedTraining

guard MPICommunicator.launchedByMPI else {
    print("sortedtrain-mpi-tests must run under mpirun, e.g. mpirun -np 2 .build/release/sortedtrain-mpi-tests")
    exit(2)
}
let comm = try MPICommunicator()
// Separate message spaces: the timeout check abandons a barrier on `abandoned`, which must
// not match any later collective.
let abandoned = try MPICommunicator.duplicateWorld()
let dataParallel = try MPICommunicator.duplicateWorld()
/// Each check's name and outcome (nil: skipped, as this machine cannot run it).
var results: [(String, Bool?)] = []

/// Runs body as the check `name`, or skips it when `runnable` is false; every rank must pass the
/// same value (see `everyRank`), or the ranks would enter different collectives.
func check(_ name: String, runnable: Bool = true, _ body: () throws -> Bool) {
    guard runnable else {
        results.append((name, nil))
        return
    }
    let ok = (try? body()) ?? false
    results.append((name, ok))
}

let world = comm.size

/// Whether `condition` holds on every rank (ranks on different hosts may differ).
func everyRank(_ condition: Bool) throws -> Bool {
    var failing = [condition ? 0.0 : 1.0]
    try dataParallel.allReduceSum(&failing)
    return failing[0] == 0
}
/// bf16 checks need the CPU's bf16 units on every rank (RunConfig refuses bf16 without them).
let bf16Everywhere = try everyRank(BFloat16.hardware.native)
check("rank and size agree with mpirun") {
    comm.size == Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"]!)! && (0..<world).contains(comm.rank)
}

check("blocking all-reduce sums floats across ranks") {
    let n = 1000
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: n)
    defer { buffer.deallocate() }
    for i in 0..<n { buffer[i] = Float(comm.rank + 1) * Float(i) }
    try comm.allReduceSum(buffer, count: n)
    let factor = Float(world * (world + 1) / 2)
    return (0..<n).allSatisfy { buffer[$0] == factor * Float($0) }
}

check("non-blocking out-of-place all-reduce leaves the input and fills the output") {
    let n = 100_003
    let input = UnsafeMutablePointer<Float>.allocate(capacity: n), output = UnsafeMutablePointer<Float>.allocate(capacity: n)
    defer { input.deallocate(); output.deallocate() }
    for i in 0..<n { input[i] = Float(comm.rank) + 0.5; output[i] = -1 }
    let pending = try comm.startAllReduceSum(input: input, output: output, count: n)
    try pending.wait(timeout: 30)
    let expected = Float(world * (world - 1) / 2) + 0.5 * Float(world)
    return (0..<n).allSatisfy { output[$0] == expected && input[$0] == Float(comm.rank) + 0.5 }
}

check("reduce-scatter sums into each rank's share (zero counts allowed); all-gather fills every share in place") {
    // Rank 1 receives nothing, the others rank + 3 floats.
    let counts = (0..<world).map { $0 == 1 ? 0 : $0 + 3 }
    let total = counts.reduce(0, +), start = counts[..<comm.rank].reduce(0, +)
    let input = UnsafeMutablePointer<Float>.allocate(capacity: total), output = UnsafeMutablePointer<Float>.allocate(capacity: total)
    defer { input.deallocate(); output.deallocate() }
    for i in 0..<total { input[i] = Float(comm.rank + 1) * Float(i); output[i] = -1 }
    try comm.startReduceScatterSum(input: input, output: output, counts: counts).wait(timeout: 30)
    let factor = Float(world * (world + 1) / 2)
    let scattered = (0..<counts[comm.rank]).allSatisfy { output[$0] == factor * Float(start + $0) }
        && (counts[comm.rank]..<total).allSatisfy { output[$0] == -1 }
    for i in 0..<total { output[i] = (start..<(start + counts[comm.rank])).contains(i) ? Float(comm.rank) + 0.25 : -1 }
    try comm.allGather(output, counts: counts)
    var owner: [Float] = []
    for (r, n) in counts.enumerated() { owner += [Float](repeating: Float(r) + 0.25, count: n) }
    return scattered && (0..<total).allSatisfy { output[$0] == owner[$0] }
}

check("all-reduce of doubles") {
    var values = [Double(comm.rank), 1.0]
    try comm.allReduceSum(&values)
    return values == [Double(world * (world - 1) / 2), Double(world)]
}

check("broadcast copies rank 0's bytes") {
    var value: [UInt64] = [comm.rank == 0 ? 0xDEAD_BEEF : 0, UInt64(comm.rank)]
    try value.withUnsafeMutableBytes { try comm.broadcast($0.baseAddress!, bytes: $0.count, root: 0) }
    return value == [0xDEAD_BEEF, 0]
}

check("barrier returns") {
    try comm.barrier()
    return true
}

check("cross-rank helpers: rank 0's string, the maximum, the lowest failing rank, the rank that differs") {
    struct Failed: Error {}
    let text = try comm.broadcast(comm.rank == 0 ? "step-00000007" : nil)
    let none = try comm.broadcast(nil as String?)
    let maximum = try comm.maximum([Double(comm.rank), -Double(comm.rank)])
    var agreedOn: (first: Int, ownError: Bool)?
    do {
        _ = try comm.agreed({ () -> Int in
            if comm.rank >= 1 { throw Failed() }
            return 0
        }) { first, error in
            agreedOn = (first, error != nil)
            return Failed()
        }
    } catch is Failed {}
    var differing: Int?
    do {
        try comm.verifyIdentical([comm.rank == world - 1 ? 1 : 0]) { first in
            differing = first
            return Failed()
        }
    } catch is Failed {}
    return text == "step-00000007" && none == nil && maximum == [Double(world - 1), 0]
        && agreedOn?.first == 1 && agreedOn?.ownError == (comm.rank == 1) && differing == world - 1
}

check("a collective a peer never joins times out and names that rank") {
    // Every rank but the last enters a barrier the last rank skips; they must give up and
    // say which rank never came.
    abandoned.timeout = 0.5
    guard abandoned.rank != world - 1 else { return true }
    do {
        try abandoned.barrier()
        return false
    } catch {
        let message = "\(error)"
        let named = message.hasPrefix("\(RankPlaces(hosts: abandoned.hosts).names([world - 1])) did not reach a barrier within 0.5 s")
        if !named { print("rank \(abandoned.rank): unexpected message: \(message)") }
        return named
    }
}

check("every rank knows every rank's host; on one host a timeout names ranks alone") {
    var name = [CChar](repeating: 0, count: 256)
    gethostname(&name, 255)
    func short(_ host: String) -> Substring { host.split(separator: ".").first ?? "" }
    let hosts = comm.hosts
    let gathered = hosts.count == world && !hosts[comm.rank].isEmpty && hosts == abandoned.hosts
        && short(hosts[comm.rank]) == short(String(cString: name))
    let oneHost = "\(CommunicatorError.peersBehind(ranks: [1], collective: "a barrier", seconds: 2, seenBy: 0, hosts: ["h", "h"]))"
    return gathered && oneHost == "rank 1 did not reach a barrier within 2 s (distributed.timeout_s): dead or stuck (seen from rank 0)"
}

check("across hosts a timeout says where the blamed ranks run, and which hosts fell silent as a whole") {
    let hosts = ["node1", "node1", "node2", "node2", "node3"]
    let places = RankPlaces(hosts: hosts)
    let silent = CommunicatorError.peersSilent(ranks: [2, 3], collective: "a gradient all-reduce", seconds: 5, quietSeconds: 1,
                                              seenBy: 0, hosts: hosts)
    let one = CommunicatorError.peersBehind(ranks: [3, 4], collective: "a barrier", seconds: 5, seenBy: 1, hosts: hosts)
    return places.names([2, 3]) == "ranks 2, 3 on node2"
        && places.names([1, 3, 2]) == "rank 1 on node1 and ranks 3, 2 on node2"
        && places.silentHosts([2, 3, 4], seenBy: 0) == ["node2", "node3"]
        && places.silentHosts([3, 4], seenBy: 0) == ["node3"]          // rank 2 still answers
        && places.silentHosts([1], seenBy: 0).isEmpty                    // its own host never
        && "\(silent)" == "ranks 2, 3 on node2 went silent during a gradient all-reduce: the others waited 5 s (distributed.timeout_s) and heard nothing from them for the last 1 s; dead or stuck, or node2 unreachable (seen from rank 0 on node1)"
        && "\(one)" == "rank 3 on node2 and rank 4 on node3 did not reach a barrier within 5 s (distributed.timeout_s): dead or stuck, or node3 unreachable (seen from rank 1 on node1)"
        && silent.blamedRanks == [2, 3]
}

/// Trains `steps` steps with `sorted` as the config's sorted section, data-parallel and on one
/// process with the same global batch; true when weights and per-exit losses agree.
/// Losses agree within `tolerance` relative, weights within `weightTolerance` of each tensor's
/// norm. In bf16 the two runs differ by more than summation order once the weights differ at
/// all: a weight whose float32 values differ in the last bit may round to a neighbouring
/// bfloat16 value (2^-7 apart, relative) for the next step's GEMMs, and such flips compound step by step.
/// bf16 checks therefore run 2 steps: the first step's losses are the same, the second's agree
/// within float32 sums (a stale bfloat16 copy of the weights on any rank would not), and the
/// weights within 1e-3 (a gradient missing a rank's share moves AdamW's first steps by ~lr).
func dataParallelEqualsSingleProcess(sorted: String, precision: TrainingPrecision = .fp32, steps: Int = 10,
                                     tolerance: Double = 1e-5, weightTolerance: Double = 1e-5) throws -> Bool {
    let model = try LlamaModel(config: LlamaConfig(hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 4,
                                                    numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 40, rmsNormEps: 1e-5,
                                                    maxPositionEmbeddings: 32))
    let runJSON = #"{"model": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40, "max_position_embeddings": 32}, "sorted": \#(sorted), "optim": {"lr": 0.01, "weight_decay": 0.1, "max_grad_norm": 1.0}, "schedule": {"type": "cosine", "warmup_steps": 2}, "train": {"micro_batch_size": 2, "sequence_length": 12, "max_steps": \#(steps), "seed": 5, "precision": "\#(precision.rawValue)"}, "distributed": {"timeout_s": 60}}"#
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("mpi-check-\(ProcessInfo.processInfo.processIdentifier).json").path
    try Data(runJSON.utf8).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let config = try RunConfig.load(path: path)
    if dataParallel.rank == 0 { model.initializeRandomly(seed: 5, std: 0.1) }
    let data = SyntheticBatchSource(microBatchSize: 2, sequenceLength: 12, vocabSize: 40)
    let trainer = try Trainer(config: config, model: model, communicator: dataParallel, data: data)
    try trainer.synchronizeInitialWeights()
    var distributedLosses: [[String: Double]] = []
    trainer.onStep = { distributedLosses.append($0.exitLosses) }
    _ = try trainer.run()

    // The same global batch on one process: world size 1, world-size micro-steps.
    var single = config
    single.train.accumulationSteps = world
    let reference = try LlamaModel(config: model.config)
    reference.initializeRandomly(seed: 5, std: 0.1)
    let referenceTrainer = try Trainer(config: single, model: reference, communicator: SingleProcessCommunicator(), data: data)
    var referenceLosses: [[String: Double]] = []
    referenceTrainer.onStep = { referenceLosses.append($0.exitLosses) }
    _ = try referenceTrainer.run()

    // Per tensor: ‖a − b‖ ≤ weightTolerance·‖b‖ (in float32 the runs differ only in the order floats are summed).
    var worst = 0.0, worstName = ""
    for tensor in model.layout.tensors {
        var difference = 0.0, norm = 0.0
        for i in tensor.range {
            let a = Double(model.parameters[i]), b = Double(reference.parameters[i])
            difference += (a - b) * (a - b)
            norm += b * b
        }
        let relative = (difference / norm).squareRoot()
        if relative > worst { worst = relative; worstName = tensor.name }
    }
    let lossesAgree = zip(distributedLosses, referenceLosses).allSatisfy { d, r in
        d.keys == r.keys && d.keys.allSatisfy { abs(d[$0]! - r[$0]!) <= tolerance * abs(r[$0]!) }
    }
    let fell = referenceLosses.last!["4"]! < referenceLosses.first!["4"]!
    if !(worst <= weightTolerance && lossesAgree && fell) {
        print("rank \(dataParallel.rank): worst relative parameter difference \(worst) (\(worstName)), losses agree \(lossesAgree), loss fell \(fell)")
    }
    return worst <= weightTolerance && lossesAgree && distributedLosses.count == steps && fell
}

check("data-parallel training equals single-process training on the same global batch") {
    try dataParallelEqualsSingleProcess(sorted: #"{"exits": [1, 2, 4]}"#)
}

check("… also with exit weights by depth, a gradual curriculum and warm-ups, and with a rotational curriculum") {
    try dataParallelEqualsSingleProcess(sorted: #"{"exits": [1, 2, 4], "scale": "sqrt", "curriculum": "gradual", "weight_start": 0.1, "warmup_steps": 4}"#)
        && dataParallelEqualsSingleProcess(sorted: #"{"exits": [1, 3], "scale": "inverse", "curriculum": "rotational", "reduction": "sum"}"#)
}

check("… also with self-distillation from the last exit") {
    try dataParallelEqualsSingleProcess(sorted: #"{"exits": [1, 2, 4], "distill": {"weight": 0.5, "temperature": 2}}"#)
}

check("… also in bf16 (train.precision), plain and with self-distillation", runnable: bf16Everywhere) {
    try dataParallelEqualsSingleProcess(sorted: #"{"exits": [1, 2, 4]}"#, precision: .bf16, steps: 2, weightTolerance: 1e-3)
        && dataParallelEqualsSingleProcess(sorted: #"{"exits": [1, 2, 4], "distill": {"weight": 0.5, "temperature": 2}}"#,
                                           precision: .bf16, steps: 2, weightTolerance: 1e-3)
}

/// A folder every rank agrees on: rank 0 picks it and broadcasts the name.
func sharedTemporaryFolder() throws -> String {
    var name = [UInt8](repeating: 0, count: 36)
    if dataParallel.rank == 0 { name = Array(UUID().uuidString.utf8) }
    try name.withUnsafeMutableBytes { try dataParallel.broadcast($0.baseAddress!, bytes: 36, root: 0) }
    return FileManager.default.temporaryDirectory.appendingPathComponent("sortedtrain-mpi-\(String(decoding: name, as: UTF8.self))").path
}

func smallRun(folder: String, maxSteps: Int, accumulation: Int = 1, zeroStage: Int = 0, maxGradNorm: Double = 0,
              precision: TrainingPrecision = .fp32) throws -> RunConfig {
    let json = #"{"model": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40, "max_position_embeddings": 32, "tie_word_embeddings": true}, "sorted": {"exits": [2, 4]}, "optim": {"lr": 0.01, "weight_decay": 0.1, "max_grad_norm": \#(maxGradNorm)}, "schedule": {"type": "linear", "warmup_steps": 2}, "train": {"micro_batch_size": 2, "sequence_length": 12, "max_steps": \#(maxSteps), "accumulation_steps": \#(accumulation), "seed": 8, "precision": "\#(precision.rawValue)"}, "distributed": {"timeout_s": 60, "zero_stage": \#(zeroStage)}}"#
    let path = folder + "/run-\(dataParallel.rank)-\(maxSteps)-\(accumulation)-\(zeroStage)-\(maxGradNorm)-\(precision).json"
    try Data(json.utf8).write(to: URL(fileURLWithPath: path))
    return try RunConfig.load(path: path)
}

func makeTrainer(_ config: RunConfig, _ communicator: Communicator) throws -> Trainer {
    let model = try LlamaModel(config: config.model)
    if communicator.rank == 0 { model.initializeRandomly(seed: 8, std: 0.1) }
    let trainer = try Trainer(config: config, model: model, communicator: communicator,
                              data: SyntheticBatchSource(microBatchSize: 2, sequenceLength: 12, vocabSize: 40))
    try trainer.synchronizeInitialWeights()
    return trainer
}

check("checkpoint + resume at the same world size is bit-exact; on one rank it continues within tolerance") {
    let folder = try sharedTemporaryFolder()
    if dataParallel.rank == 0 { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
    try dataParallel.barrier()
    defer { if dataParallel.rank == 0 { try? FileManager.default.removeItem(atPath: folder) } }
    let full = try smallRun(folder: folder, maxSteps: 6)
    var straightLosses: [Double] = []
    let straight = try makeTrainer(full, dataParallel)
    straight.onStep = { straightLosses.append($0.loss) }
    _ = try straight.run()

    var half = full
    half.train.maxSteps = 3
    let first = try makeTrainer(half, dataParallel)
    var losses: [Double] = []
    first.onStep = { losses.append($0.loss) }
    _ = try first.run()
    let manager = CheckpointManager(root: folder + "/checkpoints", keep: 2, communicator: dataParallel)
    let saved = try manager.save(first)

    let resumed = try makeTrainer(full, dataParallel)
    _ = try CheckpointManager.load(saved, into: resumed, allowExitChange: false)
    resumed.onStep = { losses.append($0.loss) }
    _ = try resumed.run()
    let exact = losses == straightLosses && resumed.model.parameters.array() == straight.model.parameters.array()

    // World size → 1: the same global batch as one rank with `world` micro-steps.
    var continuedOnOne = true
    if dataParallel.rank == 0 {
        let single = try smallRun(folder: folder, maxSteps: 6, accumulation: world)
        let alone = try makeTrainer(single, SingleProcessCommunicator())
        let state = try CheckpointManager.load(saved, into: alone, allowExitChange: false)
        _ = try alone.run()
        var difference = 0.0, norm = 0.0
        for i in 0..<alone.model.parameters.count {
            let a = Double(alone.model.parameters[i]), b = Double(straight.model.parameters[i])
            difference += (a - b) * (a - b)
            norm += b * b
        }
        continuedOnOne = state.worldSize == world && alone.state == straight.state
            && (difference / norm).squareRoot() <= 1e-5
    }
    if !exact || !continuedOnOne { print("rank \(dataParallel.rank): resume exact \(exact), continued on one rank \(continuedOnOne)") }
    return exact && continuedOnOne
}

/// ‖a − b‖ / ‖b‖ over each tensor's parameters, the worst one.
func worstRelativeDifference(_ a: LlamaModel, _ b: LlamaModel) -> Double {
    a.layout.tensors.map { tensor in
        var difference = 0.0, norm = 0.0
        for i in tensor.range {
            let x = Double(a.parameters[i]), y = Double(b.parameters[i])
            difference += (x - y) * (x - y)
            norm += y * y
        }
        return (difference / norm).squareRoot()
    }.max()!
}

/// A temporary folder every rank shares, made and (by the caller's defer) removed by rank 0.
func makeSharedFolder() throws -> String {
    let folder = try sharedTemporaryFolder()
    if dataParallel.rank == 0 { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
    try dataParallel.barrier()
    return folder
}

/// ZeRO-1 against stage 0 on the same data over `steps`: weights and metrics within `tolerance`
/// (float32: only the order of the gradients' sums differs; bf16 as in dataParallelEqualsSingleProcess).
func zeroEqualsStageZero(precision: TrainingPrecision, steps: Int, tolerance: Double) throws -> Bool {
    let folder = try makeSharedFolder()
    defer { if dataParallel.rank == 0 { try? FileManager.default.removeItem(atPath: folder) } }
    var runs: [(trainer: Trainer, metrics: [StepMetrics])] = []
    for stage in [0, 1] {
        let trainer = try makeTrainer(try smallRun(folder: folder, maxSteps: steps, accumulation: 2, zeroStage: stage, maxGradNorm: 0.5,
                                                   precision: precision),
                                      dataParallel)
        var metrics: [StepMetrics] = []
        trainer.onStep = { metrics.append($0) }
        _ = try trainer.run()
        runs.append((trainer, metrics))
    }
    let (plain, sharded) = (runs[0], runs[1])
    let worst = worstRelativeDifference(sharded.trainer.model, plain.trainer.model)
    let agree = zip(sharded.metrics, plain.metrics).allSatisfy { s, p in
        abs(s.loss - p.loss) <= tolerance * abs(p.loss) && abs(s.gradientNorm - p.gradientNorm) <= tolerance * p.gradientNorm
    }
    let clipped = plain.metrics.contains { $0.gradientNorm > 0.5 }
    // Every rank holds the same weights after the all-gather (else this throws on every rank).
    try sharded.trainer.verifyIdentical("the weights after ZeRO-1 steps", sharded.trainer.stateFingerprint())
    var momentBytes = [Double(sharded.trainer.optimizer.momentBytes)]
    try dataParallel.allReduceSum(&momentBytes)
    let shared = Int(momentBytes[0]) == plain.trainer.optimizer.momentBytes
        && sharded.trainer.optimizer.momentBytes < plain.trainer.optimizer.momentBytes
    let ok = worst <= tolerance && agree && clipped && shared && sharded.metrics.count == steps
    if !ok { print("rank \(dataParallel.rank): \(precision) worst \(worst), metrics agree \(agree), clipped \(clipped), moments shared \(shared)") }
    return ok
}

check("ZeRO-1 training equals stage-0 training (clipping active, accumulation 2); each rank keeps its share of the moments") {
    try zeroEqualsStageZero(precision: .fp32, steps: 6, tolerance: 1e-5)
}

check("… also in bf16 (train.precision), over 2 steps", runnable: bf16Everywhere) {
    try zeroEqualsStageZero(precision: .bf16, steps: 2, tolerance: 1e-3)
}

check("a ZeRO-1 checkpoint resumes bit-exactly at stage 1, and within tolerance at stage 0, on one rank, and as other ranks' shares") {
    let folder = try makeSharedFolder()
    defer { if dataParallel.rank == 0 { try? FileManager.default.removeItem(atPath: folder) } }
    let full = try smallRun(folder: folder, maxSteps: 6, zeroStage: 1, maxGradNorm: 0.5)
    var straightLosses: [Double] = []
    let straight = try makeTrainer(full, dataParallel)
    straight.onStep = { straightLosses.append($0.loss) }
    _ = try straight.run()

    var half = full
    half.train.maxSteps = 3
    let first = try makeTrainer(half, dataParallel)
    var losses: [Double] = []
    first.onStep = { losses.append($0.loss) }
    _ = try first.run()
    let saved = try CheckpointManager(root: folder + "/checkpoints", keep: 2, communicator: dataParallel).save(first)

    let resumed = try makeTrainer(full, dataParallel)
    _ = try CheckpointManager.load(saved, into: resumed, allowExitChange: false)
    try resumed.verifyIdentical("the resumed state", resumed.stateFingerprint())
    resumed.onStep = { losses.append($0.loss) }
    _ = try resumed.run()
    let exact = losses == straightLosses && resumed.model.parameters.array() == straight.model.parameters.array()

    let stageZero = try makeTrainer(try smallRun(folder: folder, maxSteps: 6, maxGradNorm: 0.5), dataParallel)
    _ = try CheckpointManager.load(saved, into: stageZero, allowExitChange: false)
    _ = try stageZero.run()
    let onStageZero = worstRelativeDifference(stageZero.model, straight.model) <= 1e-5

    // World size → 1 (all moments on one rank), and → world + 1: each share of the moments
    // loaded as that rank would, equal to the same slice of the whole.
    var elsewhere = true
    if dataParallel.rank == 0 {
        let single = try smallRun(folder: folder, maxSteps: 6, accumulation: world, zeroStage: 1, maxGradNorm: 0.5)
        let alone = try makeTrainer(single, SingleProcessCommunicator())
        _ = try CheckpointManager.load(saved, into: alone, allowExitChange: false)
        let moments = (alone.optimizer.firstMoment.array(), alone.optimizer.secondMoment.array())
        _ = try alone.run()
        let partition = ParameterPartition(layout: alone.model.layout, ranks: world + 1)
        let state = try CheckpointFiles.readState(directory: saved)
        var shares = true
        for owned in partition.ranges {
            let first = FloatBuffer(count: owned.count), second = FloatBuffer(count: owned.count)
            try CheckpointFiles.readTensors(directory: saved, state: state, layout: alone.model.layout,
                                            parameters: FloatBuffer(count: alone.model.layout.count),
                                            moments: (first, second), momentRange: owned)
            shares = shares && first.array() == Array(moments.0[owned]) && second.array() == Array(moments.1[owned])
        }
        elsewhere = shares && alone.state == straight.state && worstRelativeDifference(alone.model, straight.model) <= 1e-5
    }
    if !exact || !onStageZero || !elsewhere { print("rank \(dataParallel.rank): resume exact \(exact), on stage 0 \(onStageZero), on other world sizes \(elsewhere)") }
    return exact && onStageZero && elsewhere
}

// A check passes only when it passed on every rank.
var failures = results.map { $0.1 == false ? 1.0 : 0.0 }
try dataParallel.allReduceSum(&failures)
if comm.rank == 0 {
    for (i, (name, ok)) in results.enumerated() {
        print("\(ok == nil ? "skip" : failures[i] == 0 ? "ok  " : "FAIL") [np \(world)] \(name)")
    }
    let failed = failures.filter { $0 > 0 }.count, skipped = results.filter { $0.1 == nil }.count
    print("mpi: \(results.count - failed - skipped) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : ""))
}
let anyFailed = failures.contains { $0 > 0 }
comm.finalize()
exit(anyFailed ? 1 : 0)
