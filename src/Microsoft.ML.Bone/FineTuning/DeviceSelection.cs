using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.FineTuning;

/// <summary>Picks the torch device as ML.NET's TorchSharp trainers do, with an explicit option taking precedence.</summary>
internal static class DeviceSelection
{
    public static Device Choose(string? requested, MLContext? context)
    {
        if (!string.IsNullOrWhiteSpace(requested))
        {
            Device device;
            try { device = new Device(requested); }
            catch (Exception e) when (e is ArgumentException or FormatException) { throw new ArgumentException($"Device: '{requested}' is not a torch device (e.g. \"cpu\", \"cuda:0\").", nameof(FineTuningOptions.Device), e); }
            if (device.type == DeviceType.CUDA && !cuda.is_available())
                throw new ArgumentException($"Device: '{requested}' was asked for but CUDA is not available (this build uses the {(cuda.is_available() ? "CUDA" : "CPU")} Torch backend).", nameof(FineTuningOptions.Device));
            return device;
        }
        if (context?.GpuDeviceId is { } gpu)
        {
            if (cuda.is_available()) return new Device(DeviceType.CUDA, gpu);
            if (!context.FallbackToCpu) throw new InvalidOperationException($"MLContext.GpuDeviceId is {gpu} but CUDA is not available and FallbackToCpu is false.");
        }
        return CPU;
    }
}
