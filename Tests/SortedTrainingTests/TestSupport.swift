// Shared by the SortedTraining tests: a small run config and its trainer on synthetic data.
import Foundation
import SortedDistributed
import SortedKit
@testable import SortedTraining

/// A 16-wide model of `layers` layers, writing under `directory`.
func smallRunConfig(in directory: URL, exits: String = "[1, 2, 3]", layers: Int = 3, maxSteps: Int = 6,
                    tied: Bool = false, extra: String = "", vocab: Int = 30) throws -> RunConfig {
    let json = """
    {"model": {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": \(layers), "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": \(vocab), "max_position_embeddings": 16, "tie_word_embeddings": \(tied)},
     "sorted": {"exits": \(exits)}, "optim": {"lr": 0.01, "weight_decay": 0.1},
     "schedule": {"type": "cosine", "warmup_steps": 1},
     "train": {"micro_batch_size": 2, "sequence_length": 8, "max_steps": \(maxSteps), "seed": 3\(extra)},
     "log": {"dir": "\(directory.path)/run"}}
    """
    let url = directory.appendingPathComponent("run-\(UUID().uuidString).json")
    try Data(json.utf8).write(to: url)
    return try RunConfig.load(path: url.path)
}

/// A single-process trainer for `config`, weights from its seed.
func smallTrainer(_ config: RunConfig) throws -> Trainer {
    let model = try LlamaModel(config: config.model)
    model.initializeRandomly(seed: config.train.seed, std: 0.2)
    let data = SyntheticBatchSource(microBatchSize: 2, sequenceLength: 8, vocabSize: config.model.vocabSize)
    return try Trainer(config: config, model: model, communicator: SingleProcessCommunicator(), data: data)
}
