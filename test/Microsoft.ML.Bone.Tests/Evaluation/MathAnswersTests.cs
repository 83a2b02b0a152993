using Microsoft.ML.Bone.Evaluation;

namespace Microsoft.ML.Bone.Tests.Evaluation;

[TestClass]
public sealed class MathAnswersTests
{
    [TestMethod]
    [DataRow("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72")]
    [DataRow("so she pays $1,250.50 in total. #### 1,250.50", "1250.5")]
    [DataRow("The answer is: 18", "18")]
    [DataRow("Thus the answer is $ 7.", "7")]
    [DataRow("She has -3 apples left #### -3", "-3")]
    [DataRow("First 3 then 4, finally 12 dollars", "12")]
    public void FindsTheFinalNumber(string text, string expected) => Assert.AreEqual(decimal.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), MathAnswers.FinalNumber(text));

    [TestMethod]
    public void ExactMatchComparesNumbers()
    {
        Assert.IsTrue(MathAnswers.ExactMatch("The answer is: 1,000", "blah #### 1000"));
        Assert.IsFalse(MathAnswers.ExactMatch("The answer is: 999", "#### 1000"));
        Assert.IsFalse(MathAnswers.ExactMatch("no number here", "#### 1000"));
        Assert.IsNull(MathAnswers.FinalNumber("nothing"));
    }
}
