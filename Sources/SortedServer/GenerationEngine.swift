// GenerationEngine: the one thread that computes. HTTP handlers submit jobs to a bounded
// queue and read their tokens from an AsyncStream; the engine owns the model's running batch.
// Fixed-depth jobs join the ContinuousBatch between decode steps (continuous batching).
// Early-exit and self-speculative jobs decode one at a time through a TextGenerator; after
// each of their tokens the engine runs one step of the batch, so they do not stall it.
// A job ends at its end, when its client goes away (cancel), or at its deadline.
import Foundation
import SortedInference
import SortedKit

/// One request's generation, as the engine sees it.
final class GenerationJob: @unchecked Sendable {
    enum Event: Sendable {
        /// A token and the layers that computed it.
        case token(Int32, depth: Int)
        case finished(Finish)
    }
    enum Finish: String, Sendable {
        case stop, length
        /// The job's time limit passed.
        case timeout
        /// Its client went away (or the answer's text met a stop string).
        case cancelled
    }

    let prompt: [Int32]
    let strategy: DecodingStrategy
    let sampling: SamplingSettings
    let maxNewTokens: Int
    /// The tokens that end the answer.
    let stop: Set<Int32>
    let created = ContinuousClock.now
    let deadline: ContinuousClock.Instant
    let events: AsyncStream<Event>
    fileprivate let continuation: AsyncStream<Event>.Continuation
    private let lock = NSLock()
    private var _cancelled = false

    init(prompt: [Int32], strategy: DecodingStrategy, sampling: SamplingSettings, maxNewTokens: Int, stop: Set<Int32>,
         timeLimit: Duration) {
        self.prompt = prompt
        self.stop = stop
        self.strategy = strategy
        self.sampling = sampling
        self.maxNewTokens = maxNewTokens
        deadline = created + timeLimit
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
        continuation.onTermination = { [weak self] _ in self?.cancel() }
    }

    /// Asks the engine to stop this job at its next token (thread-safe).
    func cancel() { lock.withLock { _cancelled = true } }
    var isCancelled: Bool { lock.withLock { _cancelled } }
    var isExpired: Bool { ContinuousClock.now >= deadline }

    fileprivate func emit(_ token: Int32, depth: Int) { continuation.yield(.token(token, depth: depth)) }
    fileprivate func finish(_ finish: Finish) {
        continuation.yield(.finished(finish))
        continuation.finish()
    }
}

/// Why a job was not queued.
enum SubmitError: Error {
    case queueFull(Int)
    case shuttingDown
}

final class GenerationEngine: @unchecked Sendable {
    let loaded: LoadedModel
    /// Most jobs waiting to start (beyond the batch's slots and the dynamic job running).
    let queueLimit: Int
    let metrics: ServerMetrics

    private let batch: ContinuousBatch
    private let condition = NSCondition()
    private var waiting: [GenerationJob] = []
    private var stopping = false
    private var thread: Thread?
    /// Fixed-depth jobs in the batch, by slot.
    private var running: [Int: GenerationJob] = [:]
    private var lastTokenTime: [ObjectIdentifier: ContinuousClock.Instant] = [:]

    init(loaded: LoadedModel, slots: Int, context: Int, queueLimit: Int, metrics: ServerMetrics) throws {
        self.loaded = loaded
        self.queueLimit = queueLimit
        self.metrics = metrics
        batch = try ContinuousBatch(model: loaded.model, slots: slots, capacity: context)
    }

    /// Positions per sequence: prompt plus answer.
    var context: Int { batch.capacity }

    /// Why `prompt` with `maxNewTokens` cannot run, or nil.
    func problem(promptTokens: Int) -> String? {
        promptTokens >= context
            ? "the prompt is \(promptTokens) tokens; the server's context of \(context) holds \(context - 1) with one new token"
            : nil
    }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "sortedtrain-engine"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Queues a job; throws when the queue is full or the server is stopping.
    func submit(_ job: GenerationJob) throws {
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw SubmitError.shuttingDown }
        guard waiting.count < queueLimit else { throw SubmitError.queueFull(queueLimit) }
        waiting.append(job)
        metrics.setQueued(waiting.count)
        condition.signal()
    }

    /// Ends every job and the thread.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    // MARK: - The engine thread

    private func loop() {
        while true {
            condition.lock()
            while waiting.isEmpty && running.isEmpty && !stopping { condition.wait() }
            if stopping {
                let left = waiting
                waiting.removeAll()
                condition.unlock()
                for job in left + Array(running.values) { job.finish(.cancelled) }
                return
            }
            // A dynamic job at the head of the queue runs now when the batch has no fixed job
            // ahead of it; fixed jobs behind it wait their turn (first come, first served).
            let head = waiting.first
            condition.unlock()
            if let head, !head.isFixed {
                take(head)
                runDynamic(head)
            } else {
                stepBatch()
            }
        }
    }

    private func take(_ job: GenerationJob) {
        condition.lock()
        waiting.removeAll { $0 === job }
        metrics.setQueued(waiting.count)
        condition.unlock()
    }

    /// Admits the fixed-depth jobs at the head of the queue into free slots, drops jobs
    /// cancelled or past their deadline, and runs one decode step of the batch.
    private func stepBatch() {
        for (slot, job) in running where job.isCancelled || job.isExpired {
            batch.cancel(slot: slot)
            end(job, slot: slot, job.isCancelled ? .cancelled : .timeout)
        }
        // Every fixed-depth job at the head of the queue that has a slot joins now, prefilled
        // together.
        var joining: [GenerationJob] = []
        condition.lock()
        while joining.count < batch.freeSlots, let job = waiting.first, job.isFixed {
            waiting.removeFirst()
            if job.isCancelled || job.isExpired {
                job.finish(job.isCancelled ? .cancelled : .timeout)
            } else {
                joining.append(job)
            }
        }
        metrics.setQueued(waiting.count)
        condition.unlock()
        if !joining.isEmpty {
            let requests = joining.map { job -> ContinuousBatch.Request in
                guard case .fixed(let depth) = job.strategy else { preconditionFailure("only fixed-depth jobs join the batch") }
                return ContinuousBatch.Request(prompt: job.prompt, depth: depth, sampling: job.sampling,
                                               maxNewTokens: job.maxNewTokens, stop: job.stop)
            }
            do {
                for (slot, job) in zip(try batch.admit(requests), joining) { running[slot] = job }
            } catch {
                // The HTTP layer checked every request; a refusal here is a bug, not the client's.
                for job in joining { job.finish(.cancelled) }
            }
        }
        guard batch.running > 0 else { return }
        for event in batch.step() {
            guard let job = running[event.slot] else { continue }
            if let token = event.token, case .fixed(let depth) = job.strategy { deliver(token, depth: depth, to: job) }
            if let finish = event.finish { end(job, slot: event.slot, finish == .stop ? .stop : .length) }
        }
    }

    private func end(_ job: GenerationJob, slot: Int?, _ finish: GenerationJob.Finish) {
        if let slot { running[slot] = nil }
        lastTokenTime[ObjectIdentifier(job)] = nil
        job.finish(finish)
    }

    private func deliver(_ token: Int32, depth: Int, to job: GenerationJob) {
        let now = ContinuousClock.now
        let id = ObjectIdentifier(job)
        if let last = lastTokenTime[id] {
            metrics.observeTokenLatency((now - last).seconds)
        } else {
            metrics.observeTimeToFirstToken((now - job.created).seconds)
        }
        lastTokenTime[id] = now
        metrics.countToken(depth: depth)
        job.emit(token, depth: depth)
    }

    /// Decodes one early-exit or self-speculative job to its end, stepping the batch after
    /// each of its tokens.
    private func runDynamic(_ job: GenerationJob) {
        if job.isCancelled || job.isExpired { return end(job, slot: nil, job.isCancelled ? .cancelled : .timeout) }
        let capacity = min(context, job.prompt.count + job.maxNewTokens + 1)
        let generator: TextGenerator
        do {
            generator = try TextGenerator(model: loaded.model, strategy: job.strategy, sampling: job.sampling,
                                          stop: job.stop, capacity: capacity)
        } catch {
            return end(job, slot: nil, .cancelled)
        }
        generator.isCancelled = { job.isCancelled || job.isExpired }
        var layersBefore = 0
        let output = generator.generate([job.prompt], maxNewTokens: job.maxNewTokens) { _, token in
            let depth = generator.stats.layersComputed - layersBefore
            layersBefore = generator.stats.layersComputed
            self.deliver(token, depth: depth, to: job)
            self.stepBatch()
        }[0]
        let finish: GenerationJob.Finish = job.isCancelled ? .cancelled : job.isExpired ? .timeout
            : output.count >= job.maxNewTokens || generator.stats.promptTokens + output.count + 1 >= capacity ? .length : .stop
        end(job, slot: nil, finish)
    }
}

extension GenerationJob {
    var isFixed: Bool {
        if case .fixed = strategy { return true }
        return false
    }
}
