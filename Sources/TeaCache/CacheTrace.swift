import Foundation

/// A record of every decision of one run of any ``StepCachePolicy``, with a summary; Codable to and from JSON.
///
/// Distances can be NaN or infinite, so ``jsonData()`` / ``init(jsonData:)`` write them as the strings
/// `"nan"`, `"inf"`, `"-inf"`.
public struct CacheTrace: Codable, Sendable, Equatable {
    /// One decision (one call, or one batch element of a call in per-sample mode).
    public struct Entry: Codable, Sendable, Equatable {
        /// The 0-based index of the model call within the run (all branches together).
        public var call: Int
        /// The per-branch step.
        public var step: Int
        /// The branch.
        public var branch: BranchKey
        /// The batch element in per-sample mode, nil otherwise.
        public var sample: Int?
        /// The relative change the policy measured (nil when it measured none).
        public var distance: Double?
        /// The accumulated term: TeaCache's `P(distance)`, MagCache's ratio (``CacheDecision/rescaled``).
        public var rescaled: Double?
        /// The accumulator compared with the threshold (``CacheDecision/accumulated``; nil when not compared).
        public var accumulated: Double?
        /// The accumulator after the decision (``CacheDecision/accumulatorAfter``).
        public var accumulatorAfter: Double
        /// Computed or skipped.
        public var decision: CacheDecision.Action
        /// True when computed without comparing with the threshold.
        public var forced: Bool
        /// Why.
        public var reason: CacheDecision.Reason
        /// The policy's own numbers (nil in traces written before policies had their own payloads).
        public var details: CacheDecision.Details?

        /// An entry built from a decision.
        public init(call: Int, step: Int, branch: BranchKey, sample: Int? = nil, decision: CacheDecision) {
            self.call = call
            self.step = step
            self.branch = branch
            self.sample = sample
            self.distance = decision.distance
            self.rescaled = decision.rescaled
            self.accumulated = decision.accumulated
            self.accumulatorAfter = decision.accumulatorAfter
            self.decision = decision.action
            self.forced = decision.forced
            self.reason = decision.reason
            self.details = decision.details
        }
    }

    /// Totals of a trace.
    public struct Summary: Codable, Sendable, Equatable {
        /// Number of decisions.
        public var calls: Int
        /// Decisions that ran the block stack.
        public var computed: Int
        /// Decisions that reused a residual.
        public var skipped: Int
        /// The longest run of consecutive skips of one slot.
        public var longestSkipStreak: Int
        /// `calls / computed`: the block-stack speedup if the blocks dominate the cost (1 when nothing ran).
        public var predictedSpeedup: Double
    }

    /// The step count announced for the run.
    public var steps: Int
    /// The decisions in call order.
    public var entries: [Entry]

    /// A trace.
    public init(steps: Int, entries: [Entry] = []) {
        self.steps = steps
        self.entries = entries
    }

    /// Totals of ``entries``.
    public var summary: Summary {
        let computed = entries.filter { $0.decision == .compute }.count
        var streak: [TeaCacheSlot: Int] = [:]
        var longest = 0
        for e in entries {
            let slot = TeaCacheSlot(branch: e.branch, sample: e.sample)
            let s = e.decision == .skip ? (streak[slot] ?? 0) + 1 : 0
            streak[slot] = s
            longest = max(longest, s)
        }
        return Summary(calls: entries.count, computed: computed, skipped: entries.count - computed,
                       longestSkipStreak: longest,
                       predictedSpeedup: computed == 0 ? 1 : Double(entries.count) / Double(computed))
    }

    /// The entries of one branch, in order.
    public func entries(for branch: BranchKey) -> [Entry] { entries.filter { $0.branch == branch } }

    /// The trace as JSON (sorted keys, pretty-printed, with the summary included).
    public func jsonData() throws(CacheError) -> Data {
        struct Exported: Encodable {
            var steps: Int
            var summary: Summary
            var entries: [Entry]
        }
        do {
            return try Self.encoder().encode(Exported(steps: steps, summary: summary, entries: entries))
        } catch { throw .io("could not encode the trace: \(error)") }
    }

    /// Reads a trace written by ``jsonData()`` (the summary, if present, is recomputed, not trusted).
    public init(jsonData: Data) throws(CacheError) {
        do { self = try Self.decoder().decode(CacheTrace.self, from: jsonData) } catch {
            throw .io("not a TeaCache trace: \(error)")
        }
    }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }
}

/// The former name of ``CacheTrace``.
@available(*, deprecated, renamed: "CacheTrace")
public typealias TeaCacheTrace = CacheTrace
