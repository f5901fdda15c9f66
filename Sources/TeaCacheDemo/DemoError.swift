import DiTModels
import TeaCache

/// Errors of `teacache demo` and `teacache calibrate`. Every case reads
/// `<what>: <why>; <what to do>`.
public enum DemoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A command-line option has an unusable value (a usage error).
    case invalidOption(String)
    /// `--model` names no registered family, alias or preset (a usage error).
    case unknownModel(String, available: [String])
    /// The model could not be built (configuration, weights, inputs).
    case model(String)
    /// A file could not be read or written.
    case io(String)
    /// A TeaCache error (configuration, calibration, sampling).
    case teaCache(CacheError)
    /// A long model error in short (`summary`) and in full (`detail`, logged at debug level).
    case summarized(summary: String, detail: String)

    public var description: String {
        switch self {
        case let .invalidOption(reason):
            return reason
        case let .unknownModel(name, available):
            return "--model \(name): unknown model; use one of \(available.joined(separator: ", ")), "
                + "or a preset name from `teacache presets`"
        case let .model(reason):
            return "cannot build the model: \(reason)"
        case let .io(reason):
            return reason
        case let .teaCache(e):
            return e.description
        case let .summarized(summary, _):
            return "cannot build the model: \(summary)"
        }
    }

    /// True for problems with the command line itself (exit status 64), false for failures while running.
    public var isUsageError: Bool {
        switch self {
        case .invalidOption, .unknownModel: return true
        default: return false
        }
    }

    /// The full text of a summarised error (nil when ``description`` already says everything).
    public var detail: String? {
        if case let .summarized(_, detail) = self { return detail }
        return nil
    }

    /// Wraps any error thrown by the model or TeaCache in a ``DemoError``.
    /// `context` (a file name) prefixes model errors.
    public static func wrap(_ error: any Error, context: String? = nil) -> DemoError {
        if let e = error as? DemoError { return e }
        if let e = error as? CacheError { return .teaCache(e) }
        if let e = error as? ModelLoadError { return model(e, context: context) }
        return .model((context.map { "\($0): " } ?? "") + "\(error)")
    }

    /// A model-loading error, its mismatch lists shortened by ``ErrorSummary/describe(_:)``.
    static func model(_ error: ModelLoadError, context: String? = nil) -> DemoError {
        let prefix = context.map { "\($0): " } ?? ""
        let short = ErrorSummary.describe(error)
        return short == error.description ? .model(prefix + short) : .summarized(summary: prefix + short, detail: prefix + error.description)
    }
}

/// Shortens errors whose full text is a long list.
public enum ErrorSummary {
    /// Names shown per list before "…".
    public static let namesShown = 3

    /// A weight mismatch as counts and the first few names of each list, with where to find the rest;
    /// any other error as its description.
    public static func describe(_ error: ModelLoadError) -> String {
        guard case let .weightMismatch(missing, unexpected, misshaped) = error,
              missing.count + unexpected.count + misshaped.count > namesShown else { return error.description }
        func list(_ names: [String]) -> String {
            names.prefix(namesShown).joined(separator: ", ") + (names.count > namesShown ? ", …" : "")
        }
        var parts: [String] = []
        if !missing.isEmpty { parts.append("\(missing.count) missing (\(list(missing.sorted())))") }
        if !unexpected.isEmpty { parts.append("\(unexpected.count) unexpected (\(list(unexpected.sorted())))") }
        if !misshaped.isEmpty { parts.append("\(misshaped.count) misshaped (\(list(misshaped.map(\.description))))") }
        return "the weights do not match the configuration: " + parts.joined(separator: ", ")
            + "; check that --config and --weights belong to the same model (the full list with --log-level debug)"
    }
}
