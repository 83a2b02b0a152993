using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>Raw access to the memory of contiguous CPU tensors, for copying file data in and out without staging arrays.</summary>
internal static unsafe class TensorMemory
{
    /// <summary>
    /// Address of the first byte of <paramref name="tensor"/> (contiguous, on the CPU, at least one element).
    /// TorchSharp exposes data only as a span limited to 2 GiB, so the address is taken from a one-element view,
    /// which works for tensors of any size.
    /// </summary>
    public static byte* Pointer(Tensor tensor)
    {
        if (tensor.device_type != TorchSharp.DeviceType.CPU) throw new ArgumentException($"Only CPU memory can be read from the host; move the tensor from {tensor.device} to the CPU first.", nameof(tensor));
        if (!tensor.is_contiguous()) throw new ArgumentException("The tensor must be contiguous.", nameof(tensor));
        using Tensor flat = tensor.reshape(-1);
        using Tensor first = flat.narrow(0, 0, 1);
        return (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }

    /// <summary>Writes the bytes of <paramref name="tensor"/> (any device, any layout) to <paramref name="stream"/> in 16 MiB pieces.</summary>
    public static void WriteTo(Stream stream, Tensor tensor)
    {
        if (tensor.numel() == 0) return;
        using var scope = NewDisposeScope();
        Tensor cpu = tensor.detach().cpu().contiguous();
        long total = cpu.numel() * cpu.element_size();
        byte* pointer = Pointer(cpu);
        const int chunk = 1 << 24;
        for (long done = 0; done < total; done += chunk)
            stream.Write(new ReadOnlySpan<byte>(pointer + done, (int)Math.Min(chunk, total - done)));
    }
}
