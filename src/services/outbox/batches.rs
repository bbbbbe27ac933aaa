//! Sending one create batch to AmoCRM and telling what became of each item, with
//! AmoCRM's two batch failure modes handled: a 504 ("send fewer") and a 400 that
//! names the refused items by `request_id`.

use crate::amo::AmoError;

/// How one item of a create batch ended.
pub enum Created<T> {
    Yes(T),
    /// AmoCRM's reply did not account for it: it may exist, so the retry searches first.
    Unanswered,
    Failed(AmoError),
}

/// Sends `items` as one create; the outcome of each item, in order. AmoCRM answers
/// a 504 when a batch is too heavy ("send fewer"): the batch is halved and each
/// half sent again. When AmoCRM refuses the batch for items it names by
/// `request_id`, those fail and the rest are sent again without them.
pub async fn send_halving<T, R, F, Fut>(items: &[T], send: F) -> Vec<Created<R>>
where
    T: Clone,
    R: Copy,
    F: Fn(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Option<R>>, AmoError>>,
{
    let mut outcome: Vec<Option<Created<R>>> = (0..items.len()).map(|_| None).collect();
    let mut work: Vec<Vec<usize>> = vec![(0..items.len()).collect()];
    while let Some(indices) = work.pop() {
        if indices.is_empty() {
            continue;
        }
        let part: Vec<T> = indices.iter().map(|&i| items[i].clone()).collect();
        match send(part).await {
            Ok(ids) => {
                for (k, &i) in indices.iter().enumerate() {
                    outcome[i] = Some(match ids.get(k).copied().flatten() {
                        Some(id) => Created::Yes(id),
                        None => Created::Unanswered,
                    });
                }
            }
            Err(AmoError::Server { status: 504 }) if indices.len() > 1 => {
                let (a, b) = indices.split_at(indices.len() / 2);
                work.push(a.to_vec());
                work.push(b.to_vec());
            }
            Err(AmoError::Validation { issues }) => {
                let named = |k: usize| {
                    let rid = k.to_string();
                    issues
                        .iter()
                        .any(|issue| issue.request_id.as_deref() == Some(rid.as_str()))
                };
                let (refused, innocent): (Vec<_>, Vec<_>) =
                    indices.iter().enumerate().partition(|(k, _)| named(*k));
                if refused.is_empty() {
                    // Nothing named: the request as a whole was refused.
                    for &i in &indices {
                        let issues = issues.clone();
                        outcome[i] = Some(Created::Failed(AmoError::Validation { issues }));
                    }
                    continue;
                }
                for (k, &i) in refused {
                    let rid = k.to_string();
                    let own = issues
                        .iter()
                        .filter(|issue| issue.request_id.as_deref() == Some(rid.as_str()))
                        .cloned()
                        .collect();
                    outcome[i] = Some(Created::Failed(AmoError::Validation { issues: own }));
                }
                work.push(innocent.into_iter().map(|(_, &i)| i).collect());
            }
            Err(error) => {
                for &i in &indices {
                    outcome[i] = Some(Created::Failed(error.clone()));
                }
            }
        }
    }
    outcome
        .into_iter()
        .map(|o| o.unwrap_or(Created::Unanswered))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::ValidationIssue;

    fn issue(request_id: &str) -> ValidationIssue {
        ValidationIssue {
            request_id: Some(request_id.into()),
            code: "NotSupportedChoice".into(),
            path: "name".into(),
        }
    }

    #[tokio::test]
    async fn a_504_halves_the_batch_and_a_refused_item_does_not_sink_the_others() {
        let sent = std::sync::Mutex::new(Vec::new());
        let items: Vec<i64> = (0..6).collect();
        let results = send_halving(&items, |part: Vec<i64>| {
            sent.lock().expect("log").push(part.clone());
            async move {
                if part.len() > 3 {
                    return Err(AmoError::Server { status: 504 });
                }
                // Item 4 is refused; AmoCRM names it by its index in this request.
                if let Some(k) = part.iter().position(|&v| v == 4) {
                    let issues = vec![issue(&k.to_string())];
                    return Err(AmoError::Validation { issues });
                }
                Ok(part.iter().map(|v| Some(v * 10)).collect())
            }
        })
        .await;
        let summary: Vec<_> = results
            .iter()
            .map(|r| match r {
                Created::Yes(id) => *id,
                Created::Unanswered => -1,
                Created::Failed(_) => -2,
            })
            .collect();
        assert_eq!(summary, vec![0, 10, 20, 30, -2, 50]);
        assert_eq!(
            *sent.lock().expect("log"),
            vec![
                vec![0, 1, 2, 3, 4, 5],
                vec![3, 4, 5],
                vec![3, 5],
                vec![0, 1, 2]
            ]
        );
    }
}
