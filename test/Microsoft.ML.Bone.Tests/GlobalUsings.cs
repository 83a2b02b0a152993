global using Microsoft.ML.Bone.Adapters;
global using Microsoft.ML.Bone.Adapters.Bone;
global using Microsoft.ML.Bone.Adapters.Lora;
global using Microsoft.ML.Bone.IO;
global using Microsoft.ML.Bone.Models;
global using Microsoft.ML.Bone.Tokenization;
