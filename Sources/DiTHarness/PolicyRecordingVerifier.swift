import DiTModels
import Foundation
import Safetensors
import TeaCache
import Tensors

/// Reference runs of step-cache policies on a fixture folder's model and loop: `policy_refs.json` and
/// `policy_refs.safetensors` as the shared policy recordings' FORMAT.md describes them (records of
/// diffusers' First-Block Cache, MagCache and TaylorSeer hooks and cache-dit's DBCache).
public struct PolicyRecordings: Decodable, Sendable {
    /// One policy run.
    public struct Record: Decodable, Sendable {
        /// One model call.
        public struct Call: Decodable, Sendable {
            /// The 0-based sampling step.
            public var step: Int
            /// `cond` or `uncond`.
            public var cfgBranch: String
            /// `computed` or `skipped`.
            public var decision: String

            enum CodingKeys: String, CodingKey { case step, cfgBranch = "cfg_branch", decision }
        }

        /// `<policy>.<k>`.
        public var name: String
        /// `first_block`, `magcache`, `taylorseer` or `dbcache`.
        public var policy: String
        /// The hook configuration.
        public var params: Params
        /// Every call in call order.
        public var calls: [Call]
        /// The tensor holding the final latent.
        public var finalTensor: String

        enum CodingKeys: String, CodingKey { case name, policy, params, calls, finalTensor = "final_tensor" }
    }

    /// The parameters this implementation reads (FORMAT.md section 7); the others are ignored.
    public struct Params: Decodable, Sendable {
        /// First-Block Cache and MagCache threshold.
        public var threshold: Double?
        /// MagCache.
        public var maxSkipSteps: Int?
        /// MagCache.
        public var retentionRatio: Double?
        /// MagCache: the name of a top-level ratio set, or the ratios.
        public var magRatios: MagRatios?
        /// TaylorSeer.
        public var cacheInterval: Int?
        /// TaylorSeer.
        public var disableCacheBeforeStep: Int?
        /// TaylorSeer.
        public var disableCacheAfterStep: Int?
        /// TaylorSeer.
        public var maxOrder: Int?
        /// TaylorSeer: only lite mode (the whole output forecast) is supported.
        public var useLiteMode: Bool?
        /// DBCache (cache-dit `DBCacheConfig`).
        public var fnComputeBlocks: Int?
        /// DBCache.
        public var bnComputeBlocks: Int?
        /// DBCache.
        public var residualDiffThreshold: Double?
        /// DBCache.
        public var maxWarmupSteps: Int?
        /// DBCache: only 1 is supported.
        public var warmupInterval: Int?
        /// DBCache (−1: none).
        public var maxCachedSteps: Int?
        /// DBCache (−1: none).
        public var maxContinuousCachedSteps: Int?
        /// DBCache: must be null here.
        public var maxAccumulatedResidualDiffThreshold: Double?
        /// DBCache: must be null here.
        public var stepsComputationMask: [Int]?
        /// DBCache: must be null here.
        public var forceRefreshStepHint: Int?
        /// DBCache: its TaylorSeer calibrator, or null.
        public var calibratorConfig: Calibrator?

        /// cache-dit's `TaylorSeerCalibratorConfig`.
        public struct Calibrator: Decodable, Sendable {
            /// The Taylor order.
            public var taylorseerOrder: Int?
            /// `residual` is supported.
            public var calibratorCacheType: String?
            /// Must be true.
            public var enableCalibrator: Bool?
            /// Must be true (both streams forecast).
            public var enableEncoderCalibrator: Bool?

            enum CodingKeys: String, CodingKey {
                case taylorseerOrder = "taylorseer_order", calibratorCacheType = "calibrator_cache_type"
                case enableCalibrator = "enable_calibrator", enableEncoderCalibrator = "enable_encoder_calibrator"
            }
        }

        enum CodingKeys: String, CodingKey {
            case threshold, maxSkipSteps = "max_skip_steps", retentionRatio = "retention_ratio", magRatios = "mag_ratios"
            case cacheInterval = "cache_interval", disableCacheBeforeStep = "disable_cache_before_step"
            case disableCacheAfterStep = "disable_cache_after_step", maxOrder = "max_order", useLiteMode = "use_lite_mode"
            case fnComputeBlocks = "Fn_compute_blocks", bnComputeBlocks = "Bn_compute_blocks"
            case residualDiffThreshold = "residual_diff_threshold", maxWarmupSteps = "max_warmup_steps"
            case warmupInterval = "warmup_interval", maxCachedSteps = "max_cached_steps"
            case maxContinuousCachedSteps = "max_continuous_cached_steps"
            case maxAccumulatedResidualDiffThreshold = "max_accumulated_residual_diff_threshold"
            case stepsComputationMask = "steps_computation_mask", forceRefreshStepHint = "force_refresh_step_hint"
            case calibratorConfig = "calibrator_config"
        }
    }

    /// MagCache ratios: a named set of the top-level `mag_ratios`, or the values.
    public enum MagRatios: Decodable, Sendable {
        /// A key of ``PolicyRecordings/magRatios``.
        case named(String)
        /// The ratios.
        case values([Double])

        /// Decodes a string or a list.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            // A name or a list: the list decoder reports a value that is neither.
            if let name = try? c.decode(String.self) { self = .named(name) } else { self = .values(try c.decode([Double].self)) }
        }
    }

    /// A top-level ratio set.
    public struct MagRatioSet: Decodable, Sendable {
        /// The published list, when there is one.
        public var values: [Double]?
        /// The values the hook indexes.
        public var used: [Double]
    }

    /// Per-record diagnostics; only MagCache's step-index rule is read.
    public struct Details: Decodable, Sendable {
        /// How the MagCache step index advanced, in words.
        public var magStepIndexAdvances: String?

        enum CodingKeys: String, CodingKey { case magStepIndexAdvances = "mag_step_index_advances" }
    }

    /// The records, ordered by their index.
    public var records: [Record]
    /// The ratio sets the MagCache records name.
    public var magRatios: [String: MagRatioSet]
    /// Per-record diagnostics.
    public var thresholdDetails: [String: Details]

    enum CodingKeys: String, CodingKey { case records, magRatios = "mag_ratios", thresholdDetails = "threshold_details" }

    /// Reads `policy_refs.json` in `folder`.
    /// - Throws: `VerifyError.unreadableFile(path:reason:)` or `VerifyError.malformedFixture(file:reason:)`.
    public init(folder: URL) throws(VerifyError) {
        let url = folder.appendingPathComponent(PolicyRecordingVerifier.jsonName)
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw .unreadableFile(path: url.path, reason: "\(error)") }
        do { self = try JSONDecoder().decode(PolicyRecordings.self, from: data) } catch {
            throw .malformedFixture(file: PolicyRecordingVerifier.jsonName, reason: "\(error)")
        }
    }

    /// The `CachePolicy` a record ran, or why it cannot be run here.
    public func policy(_ record: Record) -> Result<CachePolicy, VerifyError> {
        let p = record.params
        do {
            switch record.policy {
            case "first_block":
                guard let t = p.threshold else { return .failure(.malformedFixture(file: PolicyRecordingVerifier.jsonName, reason: "\(record.name) has no threshold")) }
                return .success(.firstBlock(try FirstBlockCacheConfiguration(threshold: t)))
            case "magcache":
                let ratios: [Double]
                switch p.magRatios {
                case .values(let v)?: ratios = v
                case .named(let n)?:
                    guard let set = magRatios[n] else {
                        return .failure(.malformedFixture(file: PolicyRecordingVerifier.jsonName, reason: "\(record.name) names ratio set \(n), which is absent"))
                    }
                    ratios = set.values ?? set.used
                case nil: return .failure(.malformedFixture(file: PolicyRecordingVerifier.jsonName, reason: "\(record.name) has no mag_ratios"))
                }
                var c = try MagCacheConfiguration(magRatios: ratios, threshold: p.threshold ?? 0.06, maxSkipSteps: p.maxSkipSteps ?? 3,
                                                  retentionRatio: p.retentionRatio ?? 0.2)
                if thresholdDetails[record.name]?.magStepIndexAdvances?.hasPrefix("only on computed calls") == true {
                    c.stepIndex = .computedCallsOnly
                }
                return .success(.magCache(c))
            case "taylorseer":
                guard p.useLiteMode != false else { return .failure(.unsupported("\(record.name): TaylorSeer without lite mode (per-module forecasts)")) }
                return .success(.taylorSeer(try TaylorSeerConfiguration(
                    cacheInterval: p.cacheInterval ?? 5, disableBeforeStep: p.disableCacheBeforeStep ?? 3,
                    disableAfterStep: p.disableCacheAfterStep, maxOrder: p.maxOrder ?? 1)))
            case "dbcache":
                return try dbCache(record)
            default:
                return .failure(.unsupported("\(record.name): policy \(record.policy) is not implemented"))
            }
        } catch {
            return .failure(.malformedFixture(file: PolicyRecordingVerifier.jsonName, reason: "\(record.name): \(error)"))
        }
    }

    /// A cache-dit DBCache record (FORMAT.md 7.4): the fields this port implements, the others must be inactive.
    private func dbCache(_ record: Record) throws -> Result<CachePolicy, VerifyError> {
        let p = record.params
        guard p.warmupInterval ?? 1 == 1, p.maxAccumulatedResidualDiffThreshold == nil, p.stepsComputationMask == nil,
              p.forceRefreshStepHint == nil else {
            return .failure(.unsupported("\(record.name): DBCache with warmup_interval, accumulated-diff threshold, computation mask or refresh hint"))
        }
        func limit(_ v: Int?) -> Int? { v.flatMap { $0 < 0 ? nil : $0 } }
        let base = CachePolicy.dbCache(try DBCacheConfiguration(
            frontBlocks: p.fnComputeBlocks ?? 8, backBlocks: p.bnComputeBlocks ?? 0, threshold: p.residualDiffThreshold ?? 0.08,
            warmupSteps: p.maxWarmupSteps ?? 8, maxCachedSteps: limit(p.maxCachedSteps),
            maxConsecutiveCachedSteps: limit(p.maxContinuousCachedSteps)))
        guard let calibrator = p.calibratorConfig else { return .success(base) }
        guard calibrator.enableCalibrator != false, calibrator.enableEncoderCalibrator != false,
              calibrator.calibratorCacheType ?? "residual" == "residual" else {
            return .failure(.unsupported("\(record.name): a DBCache calibrator other than a residual TaylorSeer on both streams"))
        }
        return .success(.forecasting(base, try .cacheDitTaylorSeer(order: calibrator.taylorseerOrder ?? 1)))
    }
}

/// Checks policy recordings (``PolicyRecordings``) against this implementation: for every record it can
/// run, the per-call decisions must be identical and the final latent within the latent tolerance; the
/// uncached loop must match the recording's uncached latent too. Records it cannot run are named.
public enum PolicyRecordingVerifier {
    /// `policy_refs.json`.
    public static let jsonName = "policy_refs.json"
    /// `policy_refs.safetensors`.
    public static let tensorsName = "policy_refs.safetensors"

    /// True when `folder` holds policy recordings.
    public static func hasRecordings(_ folder: URL) -> Bool {
        FileManager.default.fileExists(atPath: folder.appendingPathComponent(jsonName).path)
    }

    /// The checks of every runnable record of the recordings in `refs` on the fixture `folder`'s model, and
    /// one line per record that cannot run, saying why.
    /// - Throws: `VerifyError` when the recording files are unreadable or malformed; errors of the model.
    public static func checks<F: DiTFamilyHarness>(
        _ folder: FixtureFolder, refs: URL, _: F.Type, model: F.Model, configuration: F.Configuration, tolerance: Double
    ) throws -> (checks: [VerifyCheck], unsupported: [String]) {
        let recordings = try PolicyRecordings(folder: refs)
        let tensorsURL = refs.appendingPathComponent(tensorsName)
        let tensors: [String: Tensor]
        do { tensors = try SafetensorsFile(contentsOf: tensorsURL).loadAll() } catch {
            throw VerifyError.unreadableFile(path: tensorsURL.path, reason: "\(error)")
        }
        func tensor(_ name: String) throws(VerifyError) -> Tensor {
            guard let t = tensors[name] else { throw .missingTensor(name: name, file: tensorsName) }
            return t
        }
        let uncached = try FixtureVerifier.sample(folder, F.self, model: model, configuration: configuration, policy: nil).latent
        var checks = [FixtureVerifier.compare("policy uncached final latent", uncached, try tensor("latent.final_uncached"), tolerance)]
        var unsupported: [String] = []
        for record in recordings.records {
            let policy: CachePolicy
            switch recordings.policy(record) {
            case .success(let p): policy = p
            case .failure(.unsupported(let why)): unsupported.append("not run: \(why)"); continue
            case .failure(let e): throw e
            }
            let expected = try tensor(record.finalTensor)
            let run = try FixtureVerifier.sample(folder, F.self, model: model, configuration: configuration, policy: policy)
            checks.append(decisionCheck(record, run.trace?.entries ?? []))
            checks.append(FixtureVerifier.compare("policy \(record.name) final latent", run.latent, expected, tolerance))
        }
        return (checks, unsupported)
    }

    /// Identical (step, branch, decision) per call.
    static func decisionCheck(_ record: PolicyRecordings.Record, _ entries: [CacheTrace.Entry]) -> VerifyCheck {
        let name = "policy \(record.name) decisions"
        guard entries.count == record.calls.count else {
            return VerifyCheck(name: name, measurement: "\(entries.count) calls, expected \(record.calls.count)", passed: false)
        }
        let same = zip(record.calls, entries).map { c, e in
            c.step == e.step && c.cfgBranch == e.branch.name && c.decision == e.decision.rawValue
        }
        let identical = same.filter { $0 }.count
        let first = same.firstIndex(of: false).map { ", first difference at call \($0)" } ?? ""
        return VerifyCheck(name: name, measurement: "\(identical)/\(record.calls.count) identical\(first)",
                           passed: identical == record.calls.count)
    }
}
