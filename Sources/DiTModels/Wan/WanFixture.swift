import Foundation
import TeaCache
import Tensors

/// How `teacache verify` feeds a wan21 fixture folder (FORMAT.md §5 "wan21") to ``WanTransformer``.
///
/// Arguments are diffusers' forward arguments: `hidden_states`, `timestep`, `encoder_hidden_states` and,
/// for image-to-video folders, `encoder_hidden_states_image`. The forward check compares both modulated
/// inputs (`teacache.modulated_input` = `timestep_proj`, `teacache.modulated_input_temb` = `temb`). Each
/// sampling record runs with the mode it names (`use_ret_steps` → ``WanTeaCacheMode/retention``) and its
/// counter rule expressed per CFG branch.
public enum WanFixture: FixtureFamily {
    public typealias Model = WanTeaCacheAdapter

    public static let familyNames = ["wan21"]
    public static let classNames = [WanConfiguration.className]

    public static func loadModel(className: String, config: Data, weights: WeightLoader) throws -> WanTeaCacheAdapter {
        let model = try WanTransformer(configuration: WanConfiguration.parse(config, className: className), loader: weights)
        return WanTeaCacheAdapter(model: model, mode: .retention)
    }

    public static func forwardInput(_ a: FixtureArguments) throws -> WanInput {
        WanInput(hiddenStates: try a.tensor("hidden_states"), timestep: try a.tensor("timestep"),
                 encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                 encoderHiddenStatesImage: a.optionalTensor("encoder_hidden_states_image"))
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments) throws -> WanInput {
        guard latent.rank >= 1 else { throw VerifyError.unsupported("the latent must have a batch axis, got \(latent.shape)") }
        return WanInput(hiddenStates: latent, timestep: try Tensor(shape: [latent.shape[0]], repeating: timestep),
                        encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                        encoderHiddenStatesImage: a.optionalTensor("encoder_hidden_states_image"))
    }

    /// `output`, both modulated inputs and the video-token residual.
    public static func forwardResults(model: WanTeaCacheAdapter, input: WanInput) throws -> [String: Tensor] {
        var state = try model.prepare(input)
        let before = state.tokens
        var results = [
            "teacache.modulated_input": state.blocks.timestepProjection,
            "teacache.modulated_input_temb": state.temb,
        ]
        try model.runBlocks(&state)
        results["teacache.residual"] = try state.tokens - before
        results["output"] = try model.outputHead(state)
        return results
    }

    /// The record's mode: `use_ret_steps` in `teacache_state` (or the record name) selects retention.
    public static func mode(of record: SamplingRecord) throws -> WanTeaCacheMode {
        if let flag = record.teacacheState["use_ret_steps"]?.bool { return flag ? .retention : .standard }
        switch record.name {
        case "use_ret_steps": return .retention
        case "no_ret_steps": return .standard
        default: throw VerifyError.unsupported("record \(record.name): cannot tell whether it uses retention steps")
        }
    }

    public static func model(_ model: WanTeaCacheAdapter, for record: SamplingRecord) throws -> WanTeaCacheAdapter {
        WanTeaCacheAdapter(model: model.model, mode: try mode(of: record))
    }

    /// The reference keys one counter over 2N calls (cond even, uncond odd) and forces calls with
    /// `counter < ret_steps` or `counter >= cutoff_steps`. Per branch that is steps `< ret_steps/2` and
    /// `>= cutoff_steps/2`: the mode's schedule when the record uses the script's values (standard: 2 and
    /// 2N − 2; retention: 10 and 2N), otherwise the same rule with the record's values.
    public static func teaCacheConfiguration(record: SamplingRecord, steps n: Int) throws -> TeaCacheConfiguration {
        guard record.counterKind == "wan21" else {
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none") is not wan21")
        }
        let state = record.teacacheState
        guard let period = state["counter_period"]?.integer, period == 2 * n,
              let ret = state["ret_steps"]?.integer, let cutoff = state["cutoff_steps"]?.integer,
              ret % 2 == 0, cutoff % 2 == 0 else {
            throw VerifyError.unsupported("record \(record.name): wan21 counter needs period 2N = \(2 * n) and even "
                                          + "ret_steps/cutoff_steps (cond and uncond calls alternate), got \(state)")
        }
        let mode = try mode(of: record)
        let scriptValues = mode == .retention ? (10, 2 * n) : (2, 2 * n - 2)
        let schedule = (ret, cutoff) == scriptValues
            ? mode.schedule
            : TeaCacheSchedule(retainFirstSteps: ret / 2, forceLastStep: false, cutoffStep: cutoff / 2)
        return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: schedule)
    }
}
