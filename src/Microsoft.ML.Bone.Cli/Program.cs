Console.WriteLine("bone");
