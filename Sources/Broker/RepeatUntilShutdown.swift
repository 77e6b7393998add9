import ServiceLifecycle

/// What the daemon's timer services run: `tick`, a pause, again, until the service group shuts
/// down gracefully or the task is cancelled; either cuts a pause short. `pause` is asked before
/// each sleep, so a reload that changes the interval applies from the next one. With
/// `pausingFirst`, the first tick waits a pause (the start-up already did that work). `memory`
/// is what one tick leaves for the next (when each store was last looked at, which ones fail).
public func repeatUntilShutdown<Memory: Sendable>(pausingFirst: Bool = false, memory: Memory,
                                                  pause: @escaping @Sendable () -> Duration,
                                                  _ tick: @escaping @Sendable (inout Memory) async -> Void) async {
    await cancelWhenGracefulShutdown {
        var memory = memory
        if pausingFirst { try? await Task.sleep(for: pause()) }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await tick(&memory)
            try? await Task.sleep(for: pause())
        }
    }
}

/// `repeatUntilShutdown` for a tick that needs nothing from the one before.
public func repeatUntilShutdown(pausingFirst: Bool = false, pause: @escaping @Sendable () -> Duration,
                                _ tick: @escaping @Sendable () async -> Void) async {
    await repeatUntilShutdown(pausingFirst: pausingFirst, memory: (), pause: pause) { _ in await tick() }
}
