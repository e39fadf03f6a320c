// `sortedtrain train`: the SoFT training job, alone or under mpirun.
import ArgumentParser
import Foundation
import SortedDistributed
import SortedTraining

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train with Sorted Fine-Tuning: every exit of the config, every step, data-parallel under mpirun.",
        discussion: """
        Run alone (one process) or as `mpirun -np N sortedtrain train --config X`: every rank \
        holds the model, trains its share of each global batch, and the gradients are summed \
        across ranks during the backward. Progress goes to the terminal from rank 0, one JSON \
        line per step to <log.dir>/metrics.jsonl, checkpoints to <checkpoint.dir>. SIGINT, \
        SIGTERM or SIGUSR1 (the one to send to mpirun) finishes the current step, saves a \
        checkpoint and exits; --resume auto continues from it, on any number of ranks. \
        The distributed section: timeout_s (a collective waiting longer ends the job) and \
        zero_stage (0, the default, or 1: ZeRO-1, each rank keeps and updates the AdamW moments \
        of its own share of the parameters, gradients reduce-scattered and parameters \
        all-gathered; checkpoints resume across stages and world sizes).

        The sorted section: exits (ascending depths), reduction (mean or sum), weights (one per \
        exit) or scale (uniform, linear, sum, sqrt, inverse, inverse_sqrt: torchtune's loss \
        scales by depth, normalised to sum 1 over the step's exits), sampling (all or random) or \
        curriculum (none, rotational, gradual: torchtune's; the last layer always trains), \
        weight_start and warmup_steps (a number for every exit below the last layer, or one per \
        exit) with warmup (linear or cosine): each exit's weight ramps to its target, as EE-LLM's; \
        distill {"weight": α, "temperature": τ, "teacher": "last"}: every exit but the deepest \
        also learns α·τ²·KL(softmax(z_deepest/τ) ‖ softmax(z_exit/τ)), the teacher detached.
        """)

    @Option(help: "Run config JSON (sections model, data, sorted, optim, schedule, train, log, checkpoint, distributed).")
    var config: String

    @Option(name: .customLong("set"), parsing: .singleValue, help: "Override a config value: section.key=value (repeatable).")
    var overrides: [String] = []

    @Option(help: "Resume: auto (the latest intact checkpoint in checkpoint.dir, if any; damaged ones are reported and skipped), a checkpoint folder, or none (start from step 0 even where checkpoint.dir holds checkpoints). Without --resume, a checkpoint.dir that holds checkpoints is refused.")
    var resume: String?

    @Flag(help: "Allow resuming a checkpoint trained with other exits.")
    var allowExitChange = false

    @Option(help: "Start from these weights: an HF model folder (config.json + safetensors) or a llama .gguf file (dequantised). The config's model section may then be left out.")
    var initFrom: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        guard !config.isEmpty else { throw CommandLineError("--config is empty; name a run config, e.g. configs/demo.json") }
        if let resume, resume.isEmpty { throw CommandLineError("--resume is empty; give auto, a checkpoint folder or none") }
        if let initFrom, initFrom.isEmpty { throw CommandLineError("--init-from is empty; give an HF model folder or a .gguf file") }
    }

    func run() throws {
        let communicator: Communicator
        do {
            communicator = try communicatorFromEnvironment()
        } catch {
            throw ValidationError("cannot start MPI: \(error)")
        }
        var options = TrainOptions(configPath: config)
        options.overrides = overrides
        options.resume = resume
        options.allowExitChange = allowExitChange
        options.initFrom = initFrom
        options.quiet = quiet
        do {
            let summary = try TrainingSession(options: options, communicator: communicator).run()
            if summary.stoppedBySignal && communicator.rank == 0 && !quiet {
                print(ErrorMessages.stopped(atStep: summary.finalStep))
                fflush(stdout)
            }
        } catch let failure as JobFailure {
            var reported = false
            if failure.reach == .thisRank, let mpi = communicator as? MPICommunicator, let error = failure.error as? CommunicatorError,
               !mpi.silentHosts(error.blamedRanks).isEmpty, let notice = MPICommunicator.launcherNoticeSeconds {
                reported = leaveToLauncher(failure, mpi, notice: notice)
            }
            if failure.reportsHere && !reported { printError(ErrorMessages.line(for: failure, training: true)) }
            guard failure.reach == .thisRank else { finish(communicator, code: 1); return }
            // This rank alone failed (a timeout, a bad batch): the others may be waiting in a
            // collective, so end the whole job. Rank 0 reports first; the others give it a
            // moment so its diagnosis is the line the user sees.
            if communicator.size > 1 {
                if communicator.rank != 0 { sleep(2) }
                communicator.abort(code: 1)
            }
            throw ExitCode(1)
        }
        finish(communicator, code: 0)
    }

    /// Every rank of another host fell silent: that host may be unreachable. MPI_Abort now
    /// would make mpirun send the abort to that host's daemon and wait for it, and TCP retries
    /// an unacknowledged message for about 15 minutes, during which its keepalive (how mpirun
    /// notices a lost host) is off. So this rank waits for mpirun to notice and stop it, then
    /// exits; if mpirun has not stopped it by the time its keepalive would have noticed, the
    /// host answers (its ranks are stuck) and the caller aborts as usual. The diagnosis is
    /// printed at once only beside mpirun: output from another host crosses the network too,
    /// and queued for a lost host it would keep that host's daemon from noticing in turn.
    /// Returns whether it printed the diagnosis.
    private func leaveToLauncher(_ failure: JobFailure, _ communicator: MPICommunicator, notice: Double) -> Bool {
        let early = MPICommunicator.besideLauncher
        if early && failure.reportsHere { printError(ErrorMessages.line(for: failure, training: true)) }
        let deadline = ContinuousClock.now + .milliseconds(Int((notice + 5) * 1000))
        while !communicator.stopRequested() && ContinuousClock.now < deadline { usleep(50_000) }
        guard communicator.stopRequested() else { return early }
        if !early && failure.reportsHere { printError(ErrorMessages.line(for: failure, training: true)) }
        // mpirun is ending the job: leave without MPI_Finalize or atexit work.
        fflush(stdout)
        _exit(1)
    }

    private func printError(_ message: String) {
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    }

    private func finish(_ communicator: Communicator, code: Int32) {
        (communicator as? MPICommunicator)?.finalize()
        if code != 0 { Foundation.exit(code) }
    }
}
