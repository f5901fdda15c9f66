/// A fixed decision per (branch, sample, step), exported from a ``CacheTrace`` and replayed exactly.
///
/// Replaying makes a run skip and compute the same calls as the recorded one, e.g. to compare a
/// model port against a reference decision pattern, or to reuse a schedule tuned on one prompt.
public struct TeaCacheReplaySchedule: Codable, Sendable, Equatable {
    /// One recorded decision.
    public struct Entry: Codable, Sendable, Equatable {
        /// The branch.
        public var branch: BranchKey
        /// The batch element (per-sample traces), or nil.
        public var sample: Int?
        /// The per-branch step.
        public var step: Int
        /// Compute or skip.
        public var action: CacheDecision.Action
        /// Whether the recorded call was forced.
        public var forced: Bool

        /// An entry.
        public init(branch: BranchKey, sample: Int? = nil, step: Int, action: CacheDecision.Action, forced: Bool) {
            self.branch = branch
            self.sample = sample
            self.step = step
            self.action = action
            self.forced = forced
        }
    }

    private struct Key: Hashable {
        var slot: TeaCacheSlot
        var step: Int
    }

    /// The step count of the recorded run; a replayed run must announce the same.
    public let steps: Int
    /// The decisions, in recorded order.
    public let entries: [Entry]
    private let index: [Key: Int]

    /// A schedule from explicit entries.
    /// - Throws: ``CacheError/replayMismatch(_:)`` for a bad step count, a step outside the run,
    ///   or two entries for the same (branch, sample, step).
    public init(steps: Int, entries: [Entry]) throws(CacheError) {
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        var index: [Key: Int] = [:]
        for (i, e) in entries.enumerated() {
            guard e.step >= 0, e.step < steps else {
                throw .replayMismatch("entry \(i) has step \(e.step), outside 0..<\(steps)")
            }
            let k = Key(slot: TeaCacheSlot(branch: e.branch, sample: e.sample), step: e.step)
            guard index[k] == nil else {
                throw .replayMismatch("two entries for \(k.slot) at step \(e.step)")
            }
            index[k] = i
        }
        self.steps = steps
        self.entries = entries
        self.index = index
    }

    /// The schedule a trace followed.
    public init(trace: CacheTrace) throws(CacheError) {
        try self.init(steps: trace.steps, entries: trace.entries.map {
            Entry(branch: $0.branch, sample: $0.sample, step: $0.step, action: $0.decision, forced: $0.forced)
        })
    }

    /// True when the entries carry batch-element indices.
    public var isPerSample: Bool { entries.contains { $0.sample != nil } }

    /// The recorded decision for `slot` at `step`, or nil.
    public func entry(for slot: TeaCacheSlot, step: Int) -> Entry? {
        index[Key(slot: slot, step: step)].map { entries[$0] }
    }

    private enum CodingKeys: String, CodingKey { case steps, entries }

    /// Decodes and validates.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let steps = try c.decode(Int.self, forKey: .steps)
        let entries = try c.decode([Entry].self, forKey: .entries)
        do { try self.init(steps: steps, entries: entries) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(steps, forKey: .steps)
        try c.encode(entries, forKey: .entries)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.steps == rhs.steps && lhs.entries == rhs.entries }
}
