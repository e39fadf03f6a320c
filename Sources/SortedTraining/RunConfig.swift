// RunConfig: the JSON run configuration (`configs/*.json`), its sections, defaults and
// `--set section.key=value` overrides. Unknown keys and bad values are errors naming the key.
import Foundation
import SortedFormats
import SortedData
import SortedIO
import SortedKit

public struct TrainSettings: Equatable, Sendable {
    public var microBatchSize: Int
    public var sequenceLength: Int
    public var accumulationSteps: Int
    public var maxSteps: Int
    public var seed: UInt64
    /// On a NaN/Inf loss or gradient: skip the update (true) or stop with an error (false).
    public var skipNonFiniteSteps: Bool
    /// train.recompute: keep every layer's activations, or only each layer's input and run
    /// the layer again in the backward (about a third more compute, a fraction of the memory).
    public var recompute: ActivationRecompute
    /// train.precision: the GEMMs in float32, or on bfloat16 inputs with float32 accumulation
    /// (weights, gradients, AdamW and checkpoints stay float32 either way).
    public var precision: TrainingPrecision = .fp32
}

public struct DataSettings: Equatable, Sendable {
    /// Training files (.json, .jsonl, .txt) or one prepared file; none means synthetic data.
    public var train: [String]
    /// Held-out files for evaluation.
    public var validation: [String]
    /// "byte", a tokenizer.json, a model directory or a .gguf.
    public var tokenizer: String
    public var template: PromptTemplate
    public var format: RecordFormat
    public var truncation: TruncationPolicy
    public var onBadRecord: BadRecordPolicy
    public var systemPrompt: String?
    public var shuffle: Bool
}

public struct LogSettings: Equatable, Sendable {
    /// Folder for the metrics file (and later checkpoints); relative to the working directory.
    public var directory: String
    /// Plain progress lines every `every` steps when not on a terminal.
    public var every: Int
    public var progress: ProgressStyle
    /// Evaluate every exit on the held-out data every N steps (0: never), on the first
    /// `evalExamples` examples of data.validation; a "validation" line in the metrics.
    public var evalEvery: Int = 0
    public var evalExamples: Int = 200
    /// The exits evaluated then (nil: the trained exits); an SFT run can watch every depth.
    public var evalExits: [Int]? = nil
}

public struct CheckpointSettings: Equatable, Sendable {
    /// Folder of step-XXXXXXXX/ checkpoints and the `latest` pointer.
    public var directory: String
    /// Save every N steps (0: only at the end and on a stop signal).
    public var every: Int
    /// How many checkpoints to keep (older ones are deleted after a successful save).
    public var keep: Int
    /// What a save that fails (a full disk) does to the run.
    public var onError: CheckpointFailurePolicy = .stop
}

/// checkpoint.on_error. `stop` (the default): the run ends at the failed save, so the problem is
/// seen while at most `every` steps are lost. `continue`: a warning, and training goes on to try
/// again at the next save (worth it when the space comes back, e.g. other jobs' files are
/// cleaned up); the final save, and one on a stop signal, still end the run if they fail.
public enum CheckpointFailurePolicy: String, CaseIterable, Sendable {
    case stop, `continue`
}

public struct DistributedSettings: Equatable, Sendable {
    /// A collective that waits longer than this ends the job (a peer is dead or stuck).
    public var timeoutSeconds: Double
    /// 0: every rank keeps all AdamW moments and updates every parameter. 1 (ZeRO-1): each
    /// rank keeps the moments of its owned range only and updates it; gradients are
    /// reduce-scattered and the parameters all-gathered.
    public var zeroStage: Int = 0
}

public struct RunConfig: Sendable {
    public var model: LlamaConfig
    public var data: DataSettings
    public var objective: SortedObjective
    public var optimizer: AdamWSettings
    /// Global gradient-norm clipping threshold; nil disables clipping.
    public var maxGradNorm: Double?
    public var train: TrainSettings
    public var schedule: LearningRateSchedule
    public var log: LogSettings
    public var checkpoint: CheckpointSettings
    public var distributed: DistributedSettings
    /// Where the config came from, for messages.
    public var source: String
    /// The config as read, overrides applied (stored in checkpoints).
    public var json: String

    static let sections = ["model", "data", "sorted", "optim", "schedule", "train", "log", "checkpoint", "distributed"]

    /// Reads a config file and applies `overrides` ("section.key=value", value as JSON or a
    /// bare string). Every error names the file, the key and, for a value written in the
    /// file, its line and column.
    /// `initialModel`: the shape of the weights the run starts from (--init-from); the
    /// config's `model` section may then be left out, and must match when present.
    public static func load(path: String, overrides: [String] = [], initialModel: LlamaConfig? = nil) throws -> RunConfig {
        let url = URL(fileURLWithPath: path)
        // A folder or a FIFO would fail (or block) with a misleading system message.
        if let type = (try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path))?[.type] as? FileAttributeType, type != .typeRegular {
            throw ConfigError(file: path, key: nil, .invalid("is not a regular file (\(type == .typeDirectory ? "a folder" : "a special file")); pass a JSON config file, e.g. configs/demo.json"))
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError(file: path, key: nil, .invalid("cannot be read (\(error.localizedDescription)); pass an existing JSON config, e.g. configs/demo.json"))
        }
        // The strict reader names the line and column, and refuses duplicate keys (where
        // most readers keep the last one silently).
        let document: JSONDocument
        do { document = try JSONParser.parseWithPositions(data) } catch let error as JSONSyntaxError {
            throw ConfigError(file: path, line: error.line, column: error.column, key: nil, .invalid("is not valid JSON: \(error.message)"))
        }
        guard var root = document.value.object else {
            throw ConfigError(file: path, key: nil, .invalid("must hold a JSON object at the top level"))
        }
        let overridden = Set(try overrides.map { try apply(override: $0, to: &root) })
        // data.template defaults to the tokenizer's own chat template when it comes with one.
        // The choice is written into the stored config: there a missing key means alpaca, the
        // default of runs from before this one.
        if var data = root["data"]?.object, data["template"] == nil,
           TokenizerLoader.chatTemplate(data["tokenizer"]?.string ?? "byte") != nil {
            data["template"] = .string(PromptTemplate.model.rawValue)
            root["data"] = .object(data)
        }
        do {
            var config = try parse(root, source: path, initialModel: initialModel)
            config.json = JSONValue.object(root).serialized
            // Where the run trains, not in parse: a stored config (export, eval) is read anywhere.
            if config.train.precision == .bf16, !BFloat16.hardware.native {
                throw ConfigError(key: "train.precision", "bf16 needs a CPU with AVX512_BF16 or AMX-BF16; this one offers \(BFloat16.hardware.isa), where bf16 would be emulated and slower than fp32: use fp32")
            }
            return config
        } catch var error as ConfigError where error.file == nil {
            // Located where the value is written: the key's, else its section's (not for a
            // value that came from an override). An error of another file (model.path) names it.
            error.file = path
            if let key = error.key, !overridden.contains(key),
               let position = document.positions[key] ?? document.positions[String(key.prefix { $0 != "." })] {
                (error.line, error.column) = (position.line, position.column)
            }
            throw error
        }
    }

    /// distributed.timeout_s as written (overrides applied), read before the rest of the
    /// config can be, so that the first collectives already use it; nil when absent or bad.
    public static func collectiveTimeout(path: String, overrides: [String]) -> Double? {
        guard let data = FileManager.default.contents(atPath: path),
              var root = (try? JSONParser.parse(data))?.object else { return nil }
        for override in overrides { _ = try? apply(override: override, to: &root) }
        guard let value = root["distributed"]?["timeout_s"]?.double, value > 0 && value <= 86_400 else { return nil }
        return value
    }

    /// The config stored in a checkpoint (overrides already applied).
    /// model: the checkpoint's own shape, which a run started with --init-from did not write
    /// into its config.
    public static func decode(stored json: String, source: String, model: LlamaConfig? = nil) throws -> RunConfig {
        guard let root = (try? JSONParser.parse(json))?.object else {
            throw ConfigError(file: source, key: nil, .invalid("holds no readable run config"))
        }
        do {
            var config = try parse(root, source: source, initialModel: root["model"] == nil ? model : nil)
            config.json = json
            return config
        } catch var error as ConfigError where error.file == nil {
            error.file = source
            throw error
        }
    }

    static func parse(_ root: [String: JSONValue], source: String, initialModel: LlamaConfig? = nil) throws -> RunConfig {
        if let unknown = root.keys.sorted().first(where: { !sections.contains($0) }) {
            throw ConfigError(key: unknown, .unknownSection(known: sections))
        }
        func section(_ name: String, _ allowed: [String]) throws -> ConfigSection {
            guard let dict = (root[name] ?? .object([:])).object else {
                throw ConfigError(key: name, .wrongType(expected: "a JSON object", found: root[name]!.serialized))
            }
            return try ConfigSection(name: name, values: dict, allowed: allowed)
        }

        let model: LlamaConfig
        if let initialModel {
            if root["model"] != nil, try loadModel(root["model"]) != initialModel {
                throw ConfigError(key: "model", "differs from the shape of the initial weights; remove the 'model' section to take theirs")
            }
            model = initialModel
        } else {
            model = try loadModel(root["model"])
        }

        let t = try section("train", ["micro_batch_size", "sequence_length", "accumulation_steps", "max_steps", "seed",
                                      "on_nonfinite", "recompute", "precision"])
        var train = TrainSettings(
            microBatchSize: try t.int("micro_batch_size", default: 4, min: 1),
            sequenceLength: try t.int("sequence_length", default: 256, min: 2),
            accumulationSteps: try t.int("accumulation_steps", default: 1, min: 1),
            maxSteps: try t.int("max_steps", default: 100, min: 0),
            seed: UInt64(try t.int("seed", default: 1234, min: 0)),
            skipNonFiniteSteps: try t.choice("on_nonfinite", default: NonFiniteStepPolicy.stop) == .skip,
            recompute: try t.choice("recompute", default: ActivationRecompute.none))
        train.precision = try t.choice("precision", default: TrainingPrecision.fp32)
        if train.sequenceLength > model.maxPositionEmbeddings {
            throw ConfigError(key: "train.sequence_length",
                              "\(train.sequenceLength) exceeds the model's max_position_embeddings \(model.maxPositionEmbeddings)")
        }
        // Sequences per step and samples over the run are counted in Int: keep them representable.
        let (perStep, o1) = train.microBatchSize.multipliedReportingOverflow(by: train.accumulationSteps)
        let (perRun, o2) = perStep.multipliedReportingOverflow(by: max(1, train.maxSteps))
        if o1 || o2 || perRun > 1 << 48 {
            throw ConfigError(key: "train.accumulation_steps",
                              "\(train.microBatchSize) × \(train.accumulationSteps) sequences per step for \(train.maxSteps) steps is more than can be counted; lower them")
        }
        let dt = try section("data", ["train", "validation", "tokenizer", "template", "format", "truncation",
                                      "on_bad_record", "system_prompt", "shuffle"])
        func paths(_ key: String) throws -> [String] {
            guard dt.has(key) else { return [] }
            if let one = dt.values[key]?.string {
                guard !one.isEmpty else { throw ConfigError(key: "data.\(key)", "is empty; name the files, or leave the key out") }
                return [one]
            }
            guard let many = dt.values[key]?.array?.compactMap(\.string), many.count == dt.values[key]?.array?.count,
                  !many.isEmpty, !many.contains("") else {
                throw ConfigError(key: "data.\(key)", "expected a file path or an array of file paths (none empty)")
            }
            return many
        }
        let data = DataSettings(
            train: try paths("train"), validation: try paths("validation"),
            tokenizer: try dt.string("tokenizer", default: "byte"),
            template: try dt.choice("template", default: PromptTemplate.alpaca),
            format: try dt.choice("format", default: RecordFormat.auto),
            truncation: try dt.choice("truncation", default: TruncationPolicy.truncate),
            onBadRecord: try dt.choice("on_bad_record", default: BadRecordPolicy.fail),
            systemPrompt: dt.has("system_prompt") ? try dt.string("system_prompt", allowEmpty: true) : nil,
            shuffle: try dt.bool("shuffle", default: true))

        let s = try section("sorted", ["exits", "reduction", "weights", "sampling", "seed", "scale", "curriculum",
                                       "weight_start", "warmup_steps", "warmup", "distill"])
        let L = model.numHiddenLayers
        let exits = try s.intArray("exits") ?? [L]
        let objective = try SortedObjective(
            exits: exits, numLayers: L,
            reduction: try s.choice("reduction", default: LossReduction.mean),
            weights: try s.doubleArray("weights"),
            sampling: try s.choice("sampling", default: ExitSampling.all),
            seed: UInt64(try s.int("seed", default: Int(train.seed), min: 0)),
            scale: s.has("scale") ? try s.choice("scale", default: ExitScale.uniform) : nil,
            curriculum: try s.choice("curriculum", default: ExitCurriculum.none),
            warmup: try exitWarmup(s, exits: exits, numLayers: L),
            totalSteps: train.maxSteps, distillation: try distillation(s))

        // Parameters, gradients and both AdamW moments (16 bytes a parameter; 18 in bf16, with the
        // weights' bfloat16 copy) and one micro-batch's activations.
        let activations = SortedPass.bytesNeeded(config: model, batchSize: train.microBatchSize, sequenceLength: train.sequenceLength,
                                                 exits: objective.exits.count, recompute: train.recompute == .layers,
                                                 precision: train.precision)
        try MemoryBudget.check(bytes: activations.flatMap { a in
            model.parameterCount.flatMap { p in
                let perParameter = train.precision == .bf16 ? 18 : 16
                return (perParameter * p).addingReportingOverflow(a).overflow ? nil : perParameter * p + a } },
                               for: "training (parameters, gradients, AdamW moments and micro-batch \(train.microBatchSize) × \(train.sequenceLength) tokens of activations)",
                               key: "train.micro_batch_size")

        let o = try section("optim", ["lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm",
                                      "decay_norms", "decay_embeddings"])
        let optimizer = AdamWSettings(
            learningRate: try o.double("lr", default: 3e-4), beta1: try o.double("beta1", default: 0.9),
            beta2: try o.double("beta2", default: 0.95), eps: try o.double("eps", default: 1e-8),
            weightDecay: try o.double("weight_decay", default: 0.0),
            decayNorms: try o.bool("decay_norms", default: false),
            decayEmbeddings: try o.bool("decay_embeddings", default: false))
        try optimizer.validate()
        let clip = o.has("max_grad_norm") ? try o.double("max_grad_norm") : 1.0
        if clip < 0 { throw ConfigError(key: "optim.max_grad_norm", "must be ≥ 0 (0 disables clipping), got \(clip)") }

        let sc = try section("schedule", ["type", "warmup_steps", "min_lr"])
        let schedule = LearningRateSchedule(
            kind: try sc.choice("type", default: LearningRateSchedule.Kind.cosine),
            peak: optimizer.learningRate, warmupSteps: try sc.int("warmup_steps", default: 0, min: 0),
            minimum: try sc.double("min_lr", default: 0), totalSteps: train.maxSteps)
        if schedule.minimum < 0 || schedule.minimum > schedule.peak {
            throw ConfigError(key: "schedule.min_lr", "must be in [0, optim.lr], got \(schedule.minimum)")
        }

        let lg = try section("log", ["dir", "every", "progress", "eval_every", "eval_examples", "eval_exits"])
        let stem = URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        let log = LogSettings(directory: try lg.string("dir", default: "runs/\(stem)"), every: try lg.int("every", default: 10, min: 1),
                              progress: try lg.choice("progress", default: ProgressStyle.auto),
                              evalEvery: try lg.int("eval_every", default: 0, min: 0),
                              evalExamples: try lg.int("eval_examples", default: 200, min: 1),
                              evalExits: try lg.intArray("eval_exits"))
        if let exits = log.evalExits {
            let L = model.numHiddenLayers
            guard !exits.isEmpty, exits == exits.sorted(), Set(exits).count == exits.count, exits.allSatisfy({ (1...L).contains($0) }) else {
                throw ConfigError(key: "log.eval_exits", "must be ascending, distinct depths in 1...\(L), got \(exits)")
            }
        }
        if log.evalEvery > 0 && data.validation.isEmpty {
            throw ConfigError(key: "log.eval_every", "needs held-out data: set data.validation (files), or eval_every 0")
        }

        let ck = try section("checkpoint", ["dir", "every", "keep", "on_error"])
        let checkpoint = CheckpointSettings(directory: try ck.string("dir", default: log.directory + "/checkpoints"),
                                            every: try ck.int("every", default: 0, min: 0),
                                            keep: try ck.int("keep", default: 3, min: 1),
                                            onError: try ck.choice("on_error", default: CheckpointFailurePolicy.stop))

        let d = try section("distributed", ["timeout_s", "zero_stage"])
        let distributed = DistributedSettings(timeoutSeconds: try d.double("timeout_s", default: 300),
                                              zeroStage: try d.int("zero_stage", default: 0))
        if !(0...1).contains(distributed.zeroStage) {
            throw ConfigError(key: "distributed.zero_stage", .notOneOf(value: String(distributed.zeroStage), choices: ["0", "1"]))
        }
        if !(distributed.timeoutSeconds > 0 && distributed.timeoutSeconds <= 86_400) {
            throw ConfigError(key: "distributed.timeout_s", "must be in (0, 86400] seconds, got \(distributed.timeoutSeconds)")
        }

        return RunConfig(model: model, data: data, objective: objective, optimizer: optimizer,
                         maxGradNorm: clip > 0 ? clip : nil, train: train, schedule: schedule, log: log,
                         checkpoint: checkpoint, distributed: distributed, source: source, json: "{}")
    }

    /// sorted.distill: {"weight": α, "temperature": τ, "teacher": "last"}.
    static func distillation(_ s: ConfigSection) throws -> Distillation? {
        guard s.has("distill") else { return nil }
        guard let values = s.values["distill"]?.object else {
            throw s.error("distill", .wrongType(expected: "an object {\"weight\": α, \"temperature\": τ, \"teacher\": \"last\"}",
                                                 found: s.values["distill"]!.serialized))
        }
        let d = try ConfigSection(name: "sorted.distill", values: values, allowed: ["weight", "temperature", "teacher"])
        _ = try d.choice("teacher", default: DistillationTeacher.last)
        return Distillation(weight: try d.double("weight", default: 1), temperature: try d.double("temperature", default: 1))
    }

    /// sorted.weight_start / warmup_steps / warmup: one value for every exit below the last
    /// layer (the full model keeps its weight from step 0), or one per exit.
    static func exitWarmup(_ s: ConfigSection, exits: [Int], numLayers: Int) throws -> ExitWarmup? {
        guard s.has("weight_start") || s.has("warmup_steps") else {
            if s.has("warmup") { throw s.error("warmup", .invalid("shapes a warm-up that sorted.weight_start and sorted.warmup_steps set; give them")) }
            return nil
        }
        guard s.has("weight_start"), s.has("warmup_steps") else {
            throw s.error(s.has("weight_start") ? "warmup_steps" : "weight_start", .missing(hint: "a warm-up needs both sorted.weight_start and sorted.warmup_steps"))
        }
        let early = exits.map { $0 < numLayers }
        let start = try s.values["weight_start"]!.double.map { v in early.map { $0 ? v : 1 } } ?? (s.doubleArray("weight_start") ?? [])
        let steps = try s.values["warmup_steps"]!.int.map { n in early.map { $0 ? n : 0 } } ?? (s.intArray("warmup_steps") ?? [])
        return ExitWarmup(start: start, steps: steps, shape: try s.choice("warmup", default: WarmupShape.linear))
    }

    /// `model` is either HF config keys inline or {"path": "dir/config.json"}. Paths in a run
    /// config are relative to the working directory, as the command line's are.
    static func loadModel(_ raw: JSONValue?) throws -> LlamaConfig {
        guard let dict = raw?.object else {
            throw ConfigError(key: "model", .missing(hint: "HF config keys inline, or {\"path\": \"path/to/config.json\"}"))
        }
        if let path = dict["path"] {
            guard dict.count == 1, let p = path.string else {
                throw ConfigError(key: "model.path", "must be a string and the only key of 'model'")
            }
            return try ModelFiles.readConfig(URL(fileURLWithPath: p))
        }
        let known = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps", "rope_theta",
                     "rope_parameters", "tie_word_embeddings", "max_position_embeddings"]
        _ = try ConfigSection(name: "model", values: dict, allowed: known)
        do {
            let config = try JSONValueDecoder.decode(LlamaConfig.self, from: JSONValue.object(dict))
            try config.validate()
            return config
        } catch let error as ConfigError {
            throw error.within("model")
        }
    }

    /// Applies "section.key=value" (value parsed as JSON: numbers, booleans, arrays; else a
    /// string); returns "section.key".
    @discardableResult
    static func apply(override: String, to root: inout [String: JSONValue]) throws -> String {
        guard let eq = override.firstIndex(of: "=") else {
            throw ConfigError(key: nil, .malformedOverride(override, expected: "an override must look like section.key=value"))
        }
        let path = override[..<eq].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let text = String(override[override.index(after: eq)...])
        guard path.count == 2, !path[0].isEmpty, !path[1].isEmpty else {
            throw ConfigError(key: nil, .malformedOverride(override, expected: "an override names a section and a key: section.key=value"))
        }
        let value = (try? JSONParser.parse(text)) ?? .string(text)
        var section = root[path[0]]?.object ?? [:]
        section[path[1]] = value
        root[path[0]] = .object(section)
        return path.joined(separator: ".")
    }
}

/// sorted.distill.teacher: which exit the others learn from (the step's deepest).
enum DistillationTeacher: String, CaseIterable {
    case last
}

/// train.recompute: which activations the backward recomputes instead of keeping.
public enum ActivationRecompute: String, CaseIterable, Sendable {
    case none, layers
}

/// train.on_nonfinite: what a step with a NaN or infinite loss or gradient does.
enum NonFiniteStepPolicy: String, CaseIterable {
    case stop, skip
}
