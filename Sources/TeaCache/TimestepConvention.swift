import Foundation

/// How a family turns the flow-matching sigma into the `timestep` value the model receives
/// (FORMAT.md §2). Computed in Float32, like the reference.
public enum TimestepConvention: String, Codable, Sendable, CaseIterable {
    /// `t = sigma` (for models that multiply by 1000 internally).
    case sigma = "sigma"
    /// `t = sigma * 1000`.
    case sigmaTimes1000 = "sigma*1000"
    /// `t = (1 - sigma) * 1000` (for schedulers that invert sigmas).
    case oneMinusSigmaTimes1000 = "(1-sigma)*1000"
    /// `t = 1 - sigma` (t = 0 is noise, 1 is data).
    case oneMinusSigma = "1-sigma"
    /// `t = 0.25 · ln(sigma)` (Cosmos' EDM noise conditioning `c_noise`; float32 log).
    case quarterLogSigma = "0.25*ln(sigma)"

    /// The timestep for `sigma`, in Float32 arithmetic.
    public func timestep(sigma: Float) -> Float {
        switch self {
        case .sigma: return sigma
        case .sigmaTimes1000: return sigma * 1000
        case .oneMinusSigmaTimes1000: return (1 - sigma) * 1000
        case .oneMinusSigma: return 1 - sigma
        case .quarterLogSigma: return logf(sigma) * 0.25
        }
    }
}

/// How the model output becomes the flow-matching velocity: a sign, and optionally only the first
/// channels (a model that also predicts a variance has 2C channels; the first C are the velocity).
public struct VelocityConvention: Codable, Sendable, Equatable {
    /// Which part of the output is the velocity.
    public enum Channels: Codable, Sendable, Equatable {
        /// The whole output.
        case all
        /// The first `count` entries along `axis`.
        case first(count: Int, axis: Int)
    }

    /// +1 (`v = out`) or −1 (`v = −out`).
    public var sign: Float
    /// Which channels.
    public var channels: Channels

    /// A convention; `sign` must be +1 or −1 (checked by the sampler).
    public init(sign: Float = 1, channels: Channels = .all) {
        self.sign = sign
        self.channels = channels
    }

    /// `v = out`.
    public static let identity = VelocityConvention()
    /// `v = −out`.
    public static let negated = VelocityConvention(sign: -1)
}
