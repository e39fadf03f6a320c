// TrainingSession: everything `sortedtrain train` does around the Trainer — config, data,
// model initialisation, resume, checkpoints, metrics, progress — on every rank, with one
// clear error line for bad input and an abort (never a hang) when a rank fails alone.
import Foundation
import SortedData
import SortedDistributed
import SortedFormats
import SortedIO
import SortedInference
import SortedKit

public struct TrainOptions: Sendable {
    public var configPath: String
    public var overrides: [String] = []
    /// "auto", a checkpoint folder, "none" for a fresh start over any checkpoints, or nil
    /// for a fresh start where checkpoint.dir holds none.
    public var resume: String?
    public var allowExitChange = false
    /// Weights to start from: an HF model folder or a llama GGUF file; the run's model
    /// section may then be left out.
    public var initFrom: String?
    public var quiet = false

    public init(configPath: String) { self.configPath = configPath }
}

public final class TrainingSession {
    let options: TrainOptions
    let communicator: Communicator
    var rank: Int { communicator.rank }

    public init(options: TrainOptions, communicator: Communicator) {
        self.options = options
        self.communicator = communicator
    }

    /// Prints on rank 0 only.
    func say(_ line: String) {
        if rank == 0 && !options.quiet {
            print(line)
            fflush(stdout)
        }
    }

    /// Runs `body` on every rank, then agrees on failure: when any rank failed, every rank
    /// throws a JobFailure that the lowest failing rank reports (naming itself when it is not 0).
    func agreed<T>(_ what: String, _ body: () throws -> T) throws -> T {
        try communicator.agreed(body) { first, failure in
            if let failure {
                return JobFailure(failure, reach: .everyRank, reportsHere: true,
                                  rankLabel: communicator.size > 1 && rank != 0 ? "rank \(rank)" : nil)
            }
            return JobFailure(PeerFailure(stage: what, rank: first), reach: .everyRank, reportsHere: false)
        }
    }

    /// Runs the whole job. Every failure comes out as a JobFailure: who reports it, and
    /// whether every rank knows (the job ends cleanly) or this rank alone failed (it must be
    /// aborted, since its peers may be waiting in a collective).
    @discardableResult
    public func run() throws -> TrainingSummary {
        do {
            return try runJob()
        } catch let failure as JobFailure {
            throw failure
        } catch let error as TrainingError where error.isRaisedOnEveryRank {
            throw JobFailure(error, reach: .everyRank, reportsHere: rank == 0)
        } catch {
            // Communicator errors already say which rank saw what.
            let label = communicator.size > 1 && !(error is CommunicatorError) ? "rank \(rank)" : nil
            throw JobFailure(error, reach: .thisRank, reportsHere: true, rankLabel: label)
        }
    }

    private func runJob() throws -> TrainingSummary {
        if let timeout = RunConfig.collectiveTimeout(path: options.configPath, overrides: options.overrides) {
            communicator.timeout = timeout
        }
        // --init-from: every rank reads the weights (they are also the shape of the model).
        let initial = try agreed("reading the initial weights") { () -> LlamaModel? in
            guard let path = options.initFrom else { return nil }
            let model = try Self.readInitialModel(path)
            // Non-finite weights would surface as a NaN loss, blamed on the learning rate.
            if let bad = model.nonFiniteTensor() { throw TrainingError.nonFiniteWeights(path: path, tensor: bad.name, count: bad.count) }
            return model
        }
        let config = try agreed("reading the config") {
            try RunConfig.load(path: options.configPath, overrides: options.overrides, initialModel: initial?.config)
        }
        communicator.timeout = config.distributed.timeoutSeconds

        let (dataset, heldOut) = try agreed("loading the data") { try loadData(config) }
        let model = try agreed("building the model") { () -> LlamaModel in
            if let initial { return initial }
            let model = try LlamaModel(config: config.model)
            if rank == 0 { model.initializeRandomly(seed: config.train.seed) }
            return model
        }
        let source = DatasetBatchSource(dataset: dataset, microBatchSize: config.train.microBatchSize,
                                        sequenceLength: config.train.sequenceLength, seed: config.train.seed,
                                        shuffle: config.data.shuffle)
        let trainer = try Trainer(config: config, model: model, communicator: communicator, data: source)
        try trainer.synchronizeInitialWeights()

        let checkpoints = CheckpointManager(root: config.checkpoint.directory, keep: config.checkpoint.keep,
                                            communicator: communicator)
        checkpoints.initialWeights = options.initFrom
        try agreed("checking checkpoint.dir") {
            // A folder that cannot take one checkpoint is refused now, not at the first save.
            try checkpoints.checkWritable(needing: CheckpointManager.bytesNeeded(model.layout))
            guard rank == 0, let foreign = checkpoints.directory.foreignEntries().first else { return }
            throw ConfigError(key: "checkpoint.dir", "\(config.checkpoint.directory)/\(foreign) is not a checkpoint folder; move it out of checkpoint.dir (train saves step-XXXXXXXX folders there)")
        }
        switch options.resume {
        case nil:
            // Training from step 0 would overwrite and prune what is there: only when asked.
            try agreed("checking checkpoint.dir") {
                guard rank == 0, let newest = checkpoints.directory.checkpointFolders().last else { return }
                throw TrainingError.checkpointsExist(root: config.checkpoint.directory, newest: newest)
            }
        case "none":
            say("not resuming: starting from step 0")
        case let resume?:
            // Rank 0 decides which checkpoint; every rank loads that one and they compare.
            let chosen = try agreed("finding the checkpoint") { () -> String? in
                guard rank == 0 else { return nil }
                let resolution = try checkpoints.directory.resolve(resume)
                if resolution.folder == nil && !resolution.skipped.isEmpty {
                    // Damaged checkpoints are no reason to start over silently.
                    throw TrainingError.noIntactCheckpoint(root: config.checkpoint.directory, skipped: resolution.skippedSummary)
                }
                for (folder, reason) in resolution.skipped {
                    FileHandle.standardError.write(Data("warning: skipped checkpoint \(folder): \(reason)\n".utf8))
                }
                return resolution.folder
            }
            let folder = try communicator.broadcast(chosen)
            if let folder {
                let state = try agreed("loading the checkpoint") {
                    try CheckpointManager.load(folder, into: trainer, allowExitChange: options.allowExitChange)
                }
                try trainer.verifyIdentical("the state loaded from \(folder)", trainer.stateFingerprint())
                if !state.runID.isEmpty { checkpoints.runID = state.runID }   // format 2 had none: a new one
                checkpoints.initialWeights = options.initFrom ?? state.initialWeights
                say("resumed from \(folder) at step \(state.step) (saved by \(state.worldSize) rank(s), now \(communicator.size))")
            } else {
                say("no checkpoint in \(config.checkpoint.directory) yet: starting from step 0")
            }
        }

        let L = config.model.numHiddenLayers
        say("sortedtrain: \(model.layout.count) parameters, \(L) layers, exits \(config.objective.exits) (\(config.objective.sampling.rawValue), \(config.objective.reduction.rawValue)), \(communicator.size) rank(s) × micro-batch \(config.train.microBatchSize) × \(config.train.accumulationSteps) accumulation = \(trainer.globalBatchSize) sequences of \(config.train.sequenceLength) tokens per step")
        if trainer.partition != nil {
            say(String(format: "ZeRO-1: each rank keeps the AdamW moments of its share of the parameters (rank 0: %.1f MiB)",
                       Double(trainer.optimizer.momentBytes) / 1_048_576))
        }
        say("data: \(dataset.count) examples (\(dataset.counts)); epoch = \(String(format: "%.1f", Double(dataset.count) / Double(trainer.globalBatchSize))) steps")

        var metrics: MetricsLog?
        if rank == 0 {
            metrics = try MetricsLog(path: (config.log.directory as NSString).appendingPathComponent("metrics.jsonl"))
        }
        let live = ProgressPrinter.drawsBar(setting: config.log.progress)
        if rank == 0, !options.quiet, config.log.progress == .auto, let warning = ProgressPrinter.environmentWarning() {
            FileHandle.standardError.write(Data("\(warning)\n".utf8))
        }
        let progress = ProgressPrinter(totalSteps: config.train.maxSteps, every: config.log.every, live: live)
        var lastSaved = trainer.state.step
        var metricsFailed = false
        trainer.onStep = { m in
            guard self.rank == 0 else { return }
            do { try metrics?.append(m) } catch {
                // Losing metric lines must not lose the run: warn once and go on.
                if !metricsFailed { FileHandle.standardError.write(Data("warning: metrics not written: \(error)\n".utf8)) }
                metricsFailed = true
            }
            if !self.options.quiet { progress.report(m) }
        }
        /// Every exit on the held-out slice, logged as a "validation" metrics line.
        func validate(at step: Int) throws {
            guard let heldOut else { return }
            let reports = try Evaluator.heldOut(try InferenceModel(model), dataset: heldOut, exits: config.log.evalExits ?? config.objective.exits,
                                                limit: config.log.evalExamples, communicator: communicator)
            guard rank == 0 else { return }
            let line = ValidationMetrics(step: step, reports: reports)
            do { try metrics?.append(line) } catch {
                FileHandle.standardError.write(Data("warning: validation metrics not written: \(error)\n".utf8))
            }
            progress.finish()
            if !options.quiet {
                say("validation at step \(step): " + reports.map { "L\($0.depth) \(String(format: "%.3f", $0.loss))" }.joined(separator: " "))
            }
        }
        StopSignal.install()
        communicator.stopRequested = { StopSignal.requested }
        var step = trainer.state.step
        let evalEvery = config.log.evalEvery
        if evalEvery > 0 && step == 0 { try validate(at: 0) }
        var summary: TrainingSummary
        repeat {
            // Run to the next checkpoint or validation boundary; save or evaluate there.
            let every = config.checkpoint.every
            var boundary = every > 0 ? min(config.train.maxSteps, (step / every + 1) * every) : config.train.maxSteps
            if evalEvery > 0 { boundary = min(boundary, (step / evalEvery + 1) * evalEvery) }
            summary = try trainer.run(until: boundary, shouldStop: { StopSignal.requested })
            step = summary.finalStep
            let atCheckpoint = every > 0 ? step % every == 0 : step == config.train.maxSteps
            if step > lastSaved && (atCheckpoint || step == config.train.maxSteps || summary.stoppedBySignal) {
                do {
                    let folder = try checkpoints.save(trainer)
                    lastSaved = step
                    progress.finish()
                    say("saved \(folder)")
                } catch let failed as CheckpointSaveFailure {
                    // Training on is only worth it while a later save can still keep its work.
                    guard config.checkpoint.onError == .continue && step < config.train.maxSteps && !summary.stoppedBySignal else {
                        throw JobFailure(FileFailure(path: failed.failure.path, failed.failure.failure, reason: failed.failure.reason,
                                                     remedy: "the previous checkpoint is intact; free space or set checkpoint.dir elsewhere, then --resume auto"),
                                         reach: .everyRank, reportsHere: failed.reportsHere)
                    }
                    progress.finish()
                    if failed.reportsHere {
                        FileHandle.standardError.write(Data("warning: \(failed); training goes on (checkpoint.on_error = continue) and saves again at the next checkpoint\n".utf8))
                    }
                }
            }
            // After the save, so a failed evaluation cannot cost the checkpoint.
            if evalEvery > 0 && step % evalEvery == 0 && summary.stepsRun > 0 && !summary.stoppedBySignal {
                try validate(at: step)
            }
        } while step < config.train.maxSteps && !summary.stoppedBySignal

        // A stopped run: the command line says how to resume it.
        if !summary.stoppedBySignal, let last = summary.lastMetrics {
            let exits = last.exitLosses.keys.sorted { Int($0)! < Int($1)! }.map { "L\($0) \(String(format: "%.4f", last.exitLosses[$0]!))" }
            say("done: step \(step), per-exit loss \(exits.joined(separator: ", ")); metrics in \(config.log.directory)/metrics.jsonl")
        }
        return summary
    }

    /// The training set, and the held-out set when validation during training is on.
    func loadData(_ config: RunConfig) throws -> (PreparedDataset, PreparedDataset?) {
        guard !config.data.train.isEmpty else {
            throw ConfigError(key: "data.train", "is required: the training files (.json, .jsonl, .txt) or a file made by `sortedtrain prepare`")
        }
        let tokenizer = try TokenizerLoader.load(config.data.tokenizer)
        if tokenizer.vocabularySize > config.model.vocabSize {
            throw ConfigError(key: "model.vocab_size", "\(config.model.vocabSize) is smaller than the tokenizer's \(tokenizer.vocabularySize) ids (\(config.data.tokenizer))")
        }
        // A held-out file that is not there is an error now, not at the first evaluation.
        if let missing = config.data.validation.first(where: { !FileManager.default.fileExists(atPath: $0) }) {
            throw ConfigError(key: "data.validation", "\(missing) does not exist; name the held-out file, or leave the key out")
        }
        var chatTemplate: ChatTemplate?
        if config.data.template == .model {
            guard let text = TokenizerLoader.chatTemplate(config.data.tokenizer) else {
                throw ConfigError(key: "data.template", "is model, but the tokenizer \(config.data.tokenizer) comes with no chat template; name another (alpaca, chatml or none)")
            }
            do { chatTemplate = try ChatTemplate(text) } catch let error as ChatTemplateError {
                throw ConfigError(key: "data.template", "is model, but the tokenizer's \(error); name another (alpaca, chatml or none)")
            }
        }
        let builder = ExampleBuilder(tokenizer: tokenizer, template: config.data.template,
                                     maxLength: config.train.sequenceLength,
                                     truncation: config.data.truncation,
                                     systemPrompt: config.data.systemPrompt, chatTemplate: chatTemplate)
        var skipped = 0
        let dataset = try DatasetLoader.load(config.data.train, builder: builder, format: config.data.format,
                                             policy: config.data.onBadRecord) { warning in
            skipped += 1
            if skipped <= 5 { self.say(warning) }
        }
        if skipped > 5 { say("… \(skipped) records skipped in all") }
        guard dataset.count > 0 else {
            let counts = dataset.counts
            let remedy = counts.dropped > 0
                ? "; \(counts.dropped) were longer than train.sequence_length (\(config.train.sequenceLength)) or had no response within it: raise train.sequence_length\(config.data.truncation == .drop ? " or set data.truncation to \"truncate\"" : "")"
                : counts.skipped > 0 ? "; every record was skipped as bad (data.on_bad_record): check the records' fields against data.format" : ""
            throw DataError(file: config.data.train.joined(separator: ", "), "holds no usable example after tokenization (\(counts))\(remedy)")
        }
        guard config.log.evalEvery > 0 else { return (dataset, nil) }
        let heldOut = try DatasetLoader.load(config.data.validation, builder: builder, format: config.data.format)
        guard heldOut.count > 0 else {
            throw DataError(file: config.data.validation.joined(separator: ", "), "holds no usable example for log.eval_every")
        }
        return (dataset, heldOut)
    }

    /// An HF directory (config.json + safetensors) or a llama GGUF file.
    static func readInitialModel(_ path: String) throws -> LlamaModel {
        let kind = ModelPath.classify(path)
        if kind == .missing { throw TrainingError.initialWeightsMissing(path: path) }
        if kind == .checkpoint || (kind == .folder && !CheckpointDirectory(root: path).checkpointFolders().isEmpty) {
            throw TrainingError.initialWeightsAreACheckpoint(path: path)
        }
        // Any folder is read as HF (its error names the missing config.json), any file as GGUF.
        return kind.isFolder ? try ModelFiles.readHF(URL(fileURLWithPath: path)) : try ModelFiles.readGGUF(URL(fileURLWithPath: path))
    }
}
