"""Unit-to-speech pipelines that stand on several components: resynthesis and synthesis evaluation."""
