//! Minimal argument reading: positionals in order, `--flag value` options, repeated options.

pub struct Args {
    rest: Vec<String>,
}

impl Args {
    pub fn from_env() -> Self {
        Self {
            rest: std::env::args().skip(1).collect(),
        }
    }

    pub fn next_positional(&mut self) -> Option<String> {
        let index = self.rest.iter().position(|a| !a.starts_with("--"))?;
        // A positional must not be the value of a preceding option.
        if index > 0 && self.rest[index - 1].starts_with("--") {
            return None;
        }
        Some(self.rest.remove(index))
    }

    pub fn required_positional(&mut self, what: &str) -> Result<String, String> {
        self.next_positional()
            .ok_or_else(|| format!("missing {what}"))
    }

    /// Removes and returns every value of `--name VALUE`.
    pub fn values(&mut self, name: &str) -> Result<Vec<String>, String> {
        let flag = format!("--{name}");
        let mut values = Vec::new();
        while let Some(index) = self.rest.iter().position(|a| *a == flag) {
            if index + 1 >= self.rest.len() {
                return Err(format!("{flag} needs a value"));
            }
            values.push(self.rest.remove(index + 1));
            self.rest.remove(index);
        }
        Ok(values)
    }

    pub fn optional(&mut self, name: &str) -> Result<Option<String>, String> {
        let mut values = self.values(name)?;
        if values.len() > 1 {
            return Err(format!("--{name} given more than once"));
        }
        Ok(values.pop())
    }

    pub fn required(&mut self, name: &str) -> Result<String, String> {
        self.optional(name)?
            .ok_or_else(|| format!("missing --{name}"))
    }

    /// Removes `--name` (a switch without a value) and says whether it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        let flag = format!("--{name}");
        let before = self.rest.len();
        self.rest.retain(|a| *a != flag);
        self.rest.len() != before
    }

    /// Anything left over is a mistake worth reporting.
    pub fn finish(&self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(extra) => Err(format!("unexpected argument `{extra}`")),
        }
    }
}
