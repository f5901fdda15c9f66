import Foundation
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// Inputs too large for the memory budget are refused with a typed error naming the size, before any
/// activation, model or input is allocated.
@Suite struct MemoryBudgetTests {
    @Test func budgetChecksAreExactAndRejectOverflowedEstimates() throws {
        let budget = MemoryBudget(gigabytes: 1)
        try budget.check("fits", bytes: 1e9)
        #expect(throws: TensorError.memoryBudgetExceeded(operation: "too big", bytes: 1e9 + 1, budget: 1e9)) {
            try budget.check("too big", bytes: 1e9 + 1)
        }
        #expect(throws: TensorError.self) { try budget.check("overflowed", bytes: .infinity) }
        #expect(throws: TensorError.self) { try budget.check("nan", bytes: .nan) }
        #expect(MemoryBudget.machineDefault.bytes > 1e8)
    }

    @Test func fluxForwardBeyondItsBudgetIsRefused() throws {
        var model = try FluxFamily.load(FluxConfiguration.load(Fixtures.folder("flux").appendingPathComponent("config.json")),
                                       weightsAt: Fixtures.folder("flux").appendingPathComponent("model.safetensors"))
        let x = try FluxForwardTests.inputs(Fixtures.tensors("flux", "forward.safetensors"))
        _ = try model(x)
        model.memoryBudget = MemoryBudget(bytes: 1000)
        #expect { try model(x) } throws: { e in
            guard case TensorError.memoryBudgetExceeded(_, let bytes, let budget)? = e as? TensorError else { return false }
            return bytes > 1000 && budget == 1000
        }
    }

    @Test func wanForwardBeyondItsBudgetIsRefused() throws {
        var model = try WanForwardTests.model()
        model.memoryBudget = MemoryBudget(bytes: 1000)
        let t = try Fixtures.tensors("wan21", "forward.safetensors")
        let x = WanInput(hiddenStates: try #require(t["input.hidden_states"]), timestep: try #require(t["input.timestep"]),
                         encoderHiddenStates: try #require(t["input.encoder_hidden_states"]))
        #expect(throws: TensorError.self) { try model(x) }
    }

    /// A benchmark table whose forward would need terabytes is refused from the analytic estimate
    /// alone, for every family (the model and the inputs are never built).
    @Test(arguments: DiTFamilies.builtIn.map { $0.name })
    func hugeBenchmarkShapesAreRefusedBeforeAllocating(_ name: String) throws {
        try Self.refuse(DiTFamilies.harness(named: name))
    }

    static func refuse<F: DiTFamilyHarness>(_: F.Type) throws {
        let shape = F.benchmarkDefault
        #expect(throws: (any Error).self) {
            try ForwardBenchmark.make(F.self, configuration: shape.configuration, inputs: shape.inputs,
                                      memoryBudget: MemoryBudget(bytes: 1e6))
        }
        // Every size at its maximum: the element bound or the budget refuses it.
        let huge = BenchmarkInputs(shape.inputs.values.mapValues { _ in SizeLimits.maximumExtent })
        #expect(throws: (any Error).self) {
            try ForwardBenchmark.make(F.self, configuration: shape.configuration, inputs: huge)
        }
    }
}

/// Every built-in family's forward refuses its own fixture input under a 1 kB budget, before computing.
@Suite struct FamilyMemoryBudgetTests {
    @Test(arguments: BlockwiseTests.cases)
    func fixtureForwardIsRefusedUnderATinyBudget(_ name: String) throws {
        let folder = try FixtureFolder(Fixtures.folder(name))
        let (family, _) = try FixtureVerifier.resolve(folder)
        try Self.check(family, folder)
    }

    static func check<F: DiTFamilyHarness>(_: F.Type, _ folder: FixtureFolder) throws {
        let configuration = try F.Configuration.parse(folder.config, className: folder.className)
        var model = try F.load(configuration, weightsAt: folder.weightsURL)
        let input = try F.forwardInput(folder.forwardArguments(), configuration: configuration)
        _ = try model.forward(input)
        model.memoryBudget = MemoryBudget(bytes: 1000)
        #expect { try model.prepare(input) } throws: { e in
            guard case TensorError.memoryBudgetExceeded(_, let bytes, 1000)? = e as? TensorError else { return false }
            return bytes > 1000
        }
    }
}
