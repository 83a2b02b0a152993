using System.Text.RegularExpressions;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>PEFT's rules for deciding whether a module path is adapted, excluded or saved in full.</summary>
public static class TargetModuleMatcher
{
    /// <summary>The <c>target_modules</c> value that adapts every linear layer but the output head.</summary>
    public const string AllLinear = "all-linear";

    /// <summary>True when <paramref name="path"/> should get an adapter under <paramref name="config"/>.</summary>
    public static bool IsTarget(AdapterConfig config, string path)
    {
        // PEFT trains modules_to_save in full and never puts an adapter inside them (e.g. target "dense" with the
        // classifier saved: classifier.dense stays a plain layer).
        if (IsExcluded(config, path) || IsModuleToSave(config, path)) return false;
        if (config.TargetModulesRegex is not null) return FullMatch(config.TargetModulesRegex, path);
        if (config.TargetModules.Count == 1 && config.TargetModules[0] == AllLinear)
            return !IsOutputHead(path) && LayerSelected(config, path);
        // PEFT quirk kept on purpose: an exact path match skips the layer filter.
        if (config.TargetModules.Contains(path)) return true;
        return config.TargetModules.Any(t => path.EndsWith("." + t, StringComparison.Ordinal)) && LayerSelected(config, path);
    }

    /// <summary>True when <paramref name="path"/> is, or lies inside, a module listed in <c>ModulesToSave</c>.</summary>
    public static bool IsModuleToSave(AdapterConfig config, string path)
    {
        string[] parts = path.Split('.');
        for (int n = parts.Length; n > 0; n--)
        {
            string prefix = string.Join('.', parts, 0, n);
            if (config.ModulesToSave.Any(m => prefix == m || prefix.EndsWith("." + m, StringComparison.Ordinal))) return true;
        }
        return false;
    }

    private static bool IsExcluded(AdapterConfig config, string path)
    {
        if (config.ExcludeModulesRegex is not null && FullMatch(config.ExcludeModulesRegex, path)) return true;
        return config.ExcludeModules.Any(e => path == e || path.EndsWith("." + e, StringComparison.Ordinal));
    }

    private static bool IsOutputHead(string path) => path == "lm_head" || path.EndsWith(".lm_head", StringComparison.Ordinal);

    private static bool LayerSelected(AdapterConfig config, string path)
    {
        if (config.LayersToTransform.Count == 0) return true;
        string pattern = string.IsNullOrEmpty(config.LayersPattern)
            ? @"^.*\.[^.]*\.(\d+)\."
            : $@"^.*\.{config.LayersPattern}\.(\d+)\.";
        Match m = Regex.Match(path, pattern);
        return m.Success && config.LayersToTransform.Contains(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    private static bool FullMatch(string pattern, string path) => Regex.IsMatch(path, $"^(?:{pattern})$");
}
