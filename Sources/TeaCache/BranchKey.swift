/// Names one independent cache entry, typically a classifier-free-guidance branch.
///
/// Each branch keeps its own previous modulated input, accumulator, cached residuals and step counter,
/// so a conditional and an unconditional call are never compared with each other (spec pitfall P5).
/// Use ``cond`` and ``uncond`` for sequential CFG, or any string (e.g. a sequence-length key, as some
/// reference ports key their cache entries).
public struct BranchKey: Hashable, Comparable, Codable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The branch name.
    public let name: String

    /// A branch with the given name.
    public init(_ name: String) { self.name = name }

    /// A branch named by any value that round-trips through a string, e.g. a per-sequence-length
    /// cache key (`BranchKey(jointLength)`); equal keys name the same branch.
    public init<Key: LosslessStringConvertible>(_ key: Key) { self.name = String(describing: key) }

    /// A branch named by a string literal.
    public init(stringLiteral value: String) { self.name = value }

    /// The conditional (prompted) branch; the default for models without CFG.
    public static let cond = BranchKey("cond")
    /// The unconditional (negative-prompt) branch.
    public static let uncond = BranchKey("uncond")

    /// Encodes as a plain JSON string.
    public init(from decoder: any Decoder) throws {
        name = try decoder.singleValueContainer().decode(String.self)
    }

    /// Encodes as a plain JSON string.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }

    public static func < (lhs: BranchKey, rhs: BranchKey) -> Bool { lhs.name < rhs.name }

    public var description: String { name }
}

/// One decision slot of a ``TeaCachePolicy``: a branch, and in per-sample mode a batch element.
public struct TeaCacheSlot: Hashable, Codable, Sendable, CustomStringConvertible {
    /// The branch.
    public var branch: BranchKey
    /// The batch element in per-sample mode, nil when the whole batch shares one decision.
    public var sample: Int?

    /// A slot for `branch` (and optionally one batch element).
    public init(branch: BranchKey, sample: Int? = nil) {
        self.branch = branch
        self.sample = sample
    }

    public var description: String { sample.map { "\(branch)[\($0)]" } ?? branch.name }
}
