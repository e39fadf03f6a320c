// ErrorMessages: the one place that turns the library's errors into the line a user sees.
// The library says what is wrong in its own terms; here the flag that is the remedy is
// added where the command line has one.
import Foundation
import SortedInference
import SortedIO
import SortedKit
import SortedTraining

enum ErrorMessages {
    /// One line for `error`; `training` adds the remedies of `train` (its --resume flags).
    static func line(for error: Error, training: Bool = false) -> String {
        switch error {
        case let failure as JobFailure:
            return (failure.rankLabel.map { "\($0): " } ?? "") + line(for: failure.error, training: training)
        case let error as TrainingError:
            return line(for: error, training: training)
        case let error as ModelLoadError:
            switch error {
            case .tokenizerRequired: return "\(error); pass it with --tokenizer"
            case .noChatTemplate, .chatTemplateUnusable: return "\(error) with --template"
            default: return "\(error)"
            }
        case let error as OutputTargetError:
            guard case .exists = error else { return "\(error)" }
            return "\(error); pass --overwrite to replace it, or name a new path"
        case let error as ConfigError:
            guard case .malformedOverride(let override, _) = error.problem else { return "\(error)" }
            return "--set \(override): \(error.message)"
        default:
            return "\(error)"
        }
    }

    private static func line(for error: TrainingError, training: Bool) -> String {
        switch error {
        case .checkpointExitsDiffer: return "\(error); pass --allow-exit-change to continue with the new exits"
        case .checkpointsExist:
            return "\(error); pass --resume auto to continue from them, or --resume none to train from step 0 and replace them"
        case .noIntactCheckpoint where training:
            return "\(error); pass --resume FOLDER to choose one, or --resume none to start over from step 0"
        case .initialWeightsMissing: return "--init-from \(error)"
        case .depthOutsideModel: return "--\(error)"                     // "--depth 9 is outside 1...4 …"
        case .depthNotAnExit: return "--\(error), or pass --force"
        default: return "\(error)"
        }
    }

    /// Whether `line(for:)` words `error` differently from its description (for any other
    /// error, ArgumentParser's message is the one to print).
    static func isLibraryError(_ error: Error) -> Bool {
        error is JobFailure || error is TrainingError || error is ConfigError || error is OutputTargetError
            || error is ModelLoadError || error is ModelLookupError
    }

    /// The line a stopped run ends with.
    static func stopped(atStep step: Int) -> String { "stopped by signal after step \(step); resume with --resume auto" }
}
