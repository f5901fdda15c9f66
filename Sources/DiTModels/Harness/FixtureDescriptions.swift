import Foundation

/// A JSON value (for the free-form parts of the fixture files, e.g. `non_tensor_args` and `teacache_state`).
public enum FixtureJSONValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([FixtureJSONValue])
    case object([String: FixtureJSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        // Each kind is tried in turn (a JSON value is exactly one of them); the last one reports the error.
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([FixtureJSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: FixtureJSONValue].self)) }
    }

    /// The number, if this is one.
    public var number: Double? { if case let .number(n) = self { return n } else { return nil } }
    /// The number if it is a whole number that fits in `Int` (never traps, unlike `Int(number)`).
    public var integer: Int? { number.flatMap { Int(exactly: $0) } }
    /// The string, if this is one.
    public var string: String? { if case let .string(s) = self { return s } else { return nil } }
    /// The Boolean, if this is one.
    public var bool: Bool? { if case let .bool(b) = self { return b } else { return nil } }
}

/// `forward.json` (the parts the verifier uses).
public struct ForwardDescription: Sendable, Decodable {
    /// The family name, when the file states it.
    public var family: String?
    /// Arguments that are not tensors, passed unchanged.
    public var nonTensorArgs: [String: FixtureJSONValue]

    enum CodingKeys: String, CodingKey { case family, nonTensorArgs = "non_tensor_args" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        family = try c.decodeIfPresent(String.self, forKey: .family)
        nonTensorArgs = try c.decodeIfPresent([String: FixtureJSONValue].self, forKey: .nonTensorArgs) ?? [:]
    }
}

/// `sampling.json` (FORMAT.md §1, §2): the loop's conventions and one record per TeaCache configuration.
public struct SamplingDescription: Sendable, Decodable {
    /// The velocity convention: a sign and a channel selection (`"all"` or a family-specific phrase).
    public struct Velocity: Sendable, Decodable {
        /// +1 or −1.
        public var sign: Float
        /// `"all"` or a family-specific channel selection.
        public var channels: String
    }

    /// Classifier-free guidance of the loop.
    public struct CFG: Sendable, Decodable {
        /// The guidance scale g of `uncond + g·(cond − uncond)`.
        public var guidanceScale: Float
        /// The branch order within a step (`["cond", "uncond"]`).
        public var callOrder: [String]
        enum CodingKeys: String, CodingKey { case guidanceScale = "guidance_scale", callOrder = "call_order" }
    }

    /// The family name, when stated.
    public var family: String?
    /// The timestep convention (FORMAT.md §2), e.g. `"sigma*1000"`.
    public var timestepConvention: String
    /// How the model output becomes the velocity.
    public var velocity: Velocity
    /// Classifier-free guidance, or nil for one call per step.
    public var cfg: CFG?
    /// Non-tensor arguments of every sampling call.
    public var nonTensorArgs: [String: FixtureJSONValue]
    /// One record per TeaCache configuration.
    public var records: [SamplingRecord]
    /// The number of sampling steps N, when stated.
    public var numSteps: Int?
    /// The number of model calls per run, when stated.
    public var modelCalls: Int?
    /// The schedule as JSON numbers (each the exact float32 value written as a decimal), when stated:
    /// N + 1 sigmas, N step sizes, N timesteps.
    public var sigmas: [Double]?
    public var dt: [Double]?
    public var timesteps: [Double]?

    enum CodingKeys: String, CodingKey {
        case family, velocity, cfg, records, sigmas, dt, timesteps
        case timestepConvention = "timestep_convention", nonTensorArgs = "non_tensor_args"
        case numSteps = "num_steps", modelCalls = "model_calls"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        family = try c.decodeIfPresent(String.self, forKey: .family)
        timestepConvention = try c.decode(String.self, forKey: .timestepConvention)
        velocity = try c.decode(Velocity.self, forKey: .velocity)
        cfg = try c.decodeIfPresent(CFG.self, forKey: .cfg)
        nonTensorArgs = try c.decodeIfPresent([String: FixtureJSONValue].self, forKey: .nonTensorArgs) ?? [:]
        records = try c.decode([SamplingRecord].self, forKey: .records)
        numSteps = try c.decodeIfPresent(Int.self, forKey: .numSteps)
        modelCalls = try c.decodeIfPresent(Int.self, forKey: .modelCalls)
        sigmas = try c.decodeIfPresent([Double].self, forKey: .sigmas)
        dt = try c.decodeIfPresent([Double].self, forKey: .dt)
        timesteps = try c.decodeIfPresent([Double].self, forKey: .timesteps)
    }
}

/// One TeaCache configuration of `sampling.json` and every decision it made.
public struct SamplingRecord: Sendable, Decodable {
    /// One model call.
    public struct Call: Sendable, Decodable {
        /// The 0-based call index within the run.
        public var call: Int
        /// The sampling step.
        public var step: Int
        /// `"cond"` or `"uncond"`.
        public var cfgBranch: String
        /// True when the schedule forced a compute.
        public var forced: Bool
        /// The relative L1 distance, when computed.
        public var relL1: Double?
        /// The rescaled distance, when accumulated.
        public var rescaled: Double?
        /// The accumulator compared with the threshold.
        public var accumulated: Double?
        /// The accumulator after the decision.
        public var accumulatorAfter: Double
        /// `"computed"` or `"skipped"`.
        public var decision: String
        /// The reference's counter value this call saw (before it was advanced), when recorded.
        public var counter: Int?
        /// The cache entry's key (lumina2: the joint sequence length), when recorded.
        public var cacheKey: Int?

        enum CodingKeys: String, CodingKey {
            case call, step, forced, rescaled, accumulated, decision, counter
            case cfgBranch = "cfg_branch", relL1 = "rel_l1", accumulatorAfter = "accumulator_after"
            case cacheKey = "cache_key"
        }
    }

    /// The record name (e.g. `"default"`, `"ret_steps"`).
    public var name: String
    /// The rescaling coefficients, highest power first.
    public var coefficients: [Double]
    /// The threshold δ.
    public var threshold: Double
    /// Counter rules (`kind`: `standard`, `wan21`, `lumina2`, with their parameters).
    public var teacacheState: [String: FixtureJSONValue]
    /// The `sampling.safetensors` tensor holding this record's final latent.
    public var finalCachedTensor: String
    /// Every call, in order.
    public var calls: [Call]
    /// The number of skipped calls, when stated.
    public var skippedCalls: Int?
    /// The number of computed calls, when stated.
    public var computedCalls: Int?

    enum CodingKeys: String, CodingKey {
        case name, coefficients, threshold, calls
        case teacacheState = "teacache_state", finalCachedTensor = "final_cached_tensor"
        case skippedCalls = "skipped_calls", computedCalls = "computed_calls"
    }

    /// `teacache_state.kind`.
    public var counterKind: String? { teacacheState["kind"]?.string }
}
