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
        public var sign: Float
        public var channels: String
    }

    /// Classifier-free guidance of the loop.
    public struct CFG: Sendable, Decodable {
        public var guidanceScale: Float
        public var callOrder: [String]
        enum CodingKeys: String, CodingKey { case guidanceScale = "guidance_scale", callOrder = "call_order" }
    }

    public var family: String?
    public var timestepConvention: String
    public var velocity: Velocity
    public var cfg: CFG?
    public var nonTensorArgs: [String: FixtureJSONValue]
    public var records: [SamplingRecord]

    enum CodingKeys: String, CodingKey {
        case family, velocity, cfg, records
        case timestepConvention = "timestep_convention", nonTensorArgs = "non_tensor_args"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        family = try c.decodeIfPresent(String.self, forKey: .family)
        timestepConvention = try c.decode(String.self, forKey: .timestepConvention)
        velocity = try c.decode(Velocity.self, forKey: .velocity)
        cfg = try c.decodeIfPresent(CFG.self, forKey: .cfg)
        nonTensorArgs = try c.decodeIfPresent([String: FixtureJSONValue].self, forKey: .nonTensorArgs) ?? [:]
        records = try c.decode([SamplingRecord].self, forKey: .records)
    }
}

/// One TeaCache configuration of `sampling.json` and every decision it made.
public struct SamplingRecord: Sendable, Decodable {
    /// One model call.
    public struct Call: Sendable, Decodable {
        public var call: Int
        public var step: Int
        public var cfgBranch: String
        public var forced: Bool
        public var relL1: Double?
        public var rescaled: Double?
        public var accumulated: Double?
        public var accumulatorAfter: Double
        /// `"computed"` or `"skipped"`.
        public var decision: String

        enum CodingKeys: String, CodingKey {
            case call, step, forced, rescaled, accumulated, decision
            case cfgBranch = "cfg_branch", relL1 = "rel_l1", accumulatorAfter = "accumulator_after"
        }
    }

    public var name: String
    public var coefficients: [Double]
    public var threshold: Double
    /// Counter rules (`kind`: `standard`, `wan21`, `lumina2`, with their parameters).
    public var teacacheState: [String: FixtureJSONValue]
    /// The `sampling.safetensors` tensor holding this record's final latent.
    public var finalCachedTensor: String
    public var calls: [Call]

    enum CodingKeys: String, CodingKey {
        case name, coefficients, threshold, calls
        case teacacheState = "teacache_state", finalCachedTensor = "final_cached_tensor"
    }

    /// `teacache_state.kind`.
    public var counterKind: String? { teacacheState["kind"]?.string }
}

enum FixtureJSON {
    static func decode<T: Decodable>(_ type: T.Type, from url: URL) throws(VerifyError) -> T {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw .unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw .malformedFixture(file: url.lastPathComponent, reason: "\(error)")
        }
    }
}
