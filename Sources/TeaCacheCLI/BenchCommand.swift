import ArgumentParser

/// `teacache bench …`: speed measurements, each reported side by side with sgemm measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernel and model speed on this machine.",
        subcommands: [BenchKernelsCommand.self, BenchForwardCommand.self]
    )
}
