import ArgumentParser
import Tensors

/// Validation of the `--threads` option shared by every subcommand that has it.
enum ThreadsOption {
    /// Throws a `ValidationError` unless `threads` is nil or in `1 ... Parallelism.maximumThreadCount`.
    static func validate(_ threads: Int?) throws {
        guard let threads else { return }
        guard threads >= 1, threads <= Parallelism.maximumThreadCount else {
            throw ValidationError("--threads must be between 1 and \(Parallelism.maximumThreadCount), got \(threads)")
        }
    }
}
